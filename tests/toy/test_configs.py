"""Every ablation overlay composes with every real config through the CLI's --print_config.

``--print_config`` parses (overlays in order, linked clip geometry) and prints without
instantiating anything, so the real configs' placeholder paths (``/path/to/...``) are fine.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BASES = ["drums.yaml", "landscape.yaml", "vggsound.yaml", "toy.yaml"]
OVERLAYS = sorted(p.name for p in (REPO / "configs/ablation").glob("*.yaml"))


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_leaves(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _lookup(tree: dict, path: tuple):
    for k in path:
        tree = tree[k]
    return tree


def print_config(*configs: str) -> dict:
    from av_lightning.cli import cli_main

    args = ["fit"] + [x for c in configs for x in ("--config", str(REPO / "configs" / c))] + ["--print_config"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code in (0, None), buf.getvalue()
    return yaml.safe_load(buf.getvalue())


def test_the_ablation_overlays_exist():
    expected = {"cond_text", "cond_audio", "cond_text_audio", "vec", "mapper2", "mapper4"} | {f"win{k}" for k in range(1, 6)}
    assert expected <= {Path(o).stem for o in OVERLAYS}


@pytest.mark.parametrize("base", BASES)
def test_every_overlay_composes_with_the_base(base):
    plain = print_config(base)
    for overlay in OVERLAYS:
        wanted = _leaves(yaml.safe_load((REPO / "configs/ablation" / overlay).read_text()))
        assert wanted, f"{overlay} is empty"
        merged = print_config(base, f"ablation/{overlay}")
        for path, value in wanted.items():
            assert _lookup(merged, path) == value, f"{base} + {overlay}: {'.'.join(path)}"
        # an overlay changes only its own keys: the rest of the base survives (class paths included)
        for path, value in _leaves(plain).items():
            if path not in wanted:
                assert _lookup(merged, path) == value, f"{base} + {overlay} changed {'.'.join(path)}"


def test_the_gates_sample_as_the_demo_does():
    """The backbone's gates and the oracle use the demo's sampler: configs/toy.yaml's guidance."""
    import yaml

    from av_lightning.toy.timing import DEMO_GUIDANCE, DEMO_TEMPORAL_GUIDANCE, DEMO_TEMPORAL_SPAN

    cfg = yaml.safe_load((REPO / "configs/toy.yaml").read_text())
    assert cfg["model"]["init_args"]["guidance_scale"] == DEMO_GUIDANCE
    assert cfg["model"]["init_args"]["temporal_guidance_scale"] == DEMO_TEMPORAL_GUIDANCE
    assert cfg["model"]["init_args"]["temporal_guidance_span"] == DEMO_TEMPORAL_SPAN
