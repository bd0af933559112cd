"""The ablation sweep's bookkeeping: which overlays are the base itself, and means ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from av_lightning.toy import ablation

REPO = Path(__file__).resolve().parents[2]


def test_noop_overlays_on_the_toy_base():
    base = str(REPO / "configs/toy.yaml")
    folder = REPO / "configs/ablation"
    noop = {o for o in ablation.RUN_ORDER if ablation.is_base(base, folder / f"{o}.yaml")}
    assert noop == {"cond_audio", "win5", "mapper4"}


def test_aggregate_means_and_stds_over_seeds():
    runs = [{"overlay": "vec", "seed": s, "steps": 10, "train_s": 1, "sample_s": 2, "av_align": v, "class_accuracy": c}
            for s, v, c in ((0, 0.2, 1.0), (1, 0.4, 0.5), (2, float("nan"), 0.0))]
    (row,) = ablation.aggregate(runs)
    assert row["seeds"] == [0, 1, 2]
    # NaN (no peaks in any clip) is left out of the mean, not counted as 0
    assert np.isclose(row["av_align"], 0.3) and np.isclose(row["av_align_std"], np.std([0.2, 0.4]))
    assert np.isclose(row["class_accuracy"], 0.5) and np.isclose(row["class_accuracy_std"], np.std([1.0, 0.5, 0.0]))
    assert "event_recall" not in row


def test_plot_writes_a_png(tmp_path):
    from PIL import Image

    rows = [{"label": "vec", "av_align": 0.4, "av_align_std": 0.1, "class_accuracy": 0.9, "class_accuracy_std": 0.0},
            {"label": "win. 1-res."}]
    path = ablation.plot(rows, tmp_path / "a.png")
    assert Image.open(path).size[1] > 50


def test_step_overrides_keep_a_fixed_length_schedule_equal_to_max_steps():
    from av_lightning.cli import parse_configs
    from av_lightning.toy.demo import step_overrides

    toy = [str(REPO / "configs/toy.yaml")]
    over = step_overrides(toy, 37)
    assert over == ["--trainer.max_steps=37", "--model.init_args.lr_scheduler.init_args.total_steps=37"]
    cfg = parse_configs(toy, over)
    assert cfg.trainer.max_steps == 37 and cfg.model.init_args.lr_scheduler.init_args.total_steps == 37
    # a config without a schedule gets only the step count
    assert step_overrides([str(REPO / "configs/tiny.yaml")], 5) == ["--trainer.max_steps=5"]


def test_report_states_the_runs_steps_and_guidance(tmp_path):
    from types import SimpleNamespace

    runs = [{"overlay": o, "seed": s, "steps": 200, "guidance": 3.0, "train_s": 1, "sample_s": 2, "av_align": 0.5 + s / 10,
             "class_accuracy": 1.0} for o in ("cond_audio", "vec") for s in (0, 1)]
    args = SimpleNamespace(seeds=[0, 1], max_steps=None, num_test=32, sample_steps=8, argv=["--only", "cond_audio", "vec"])
    report = tmp_path / "ablation.md"
    ablation.write_report(runs, args, "configs/toy.yaml", "2026-01-01 00:00", "0 0 0", report, [])
    text = report.read_text()
    words = " ".join(text.split())
    assert "200 training steps" in words and "guidance 3. AV-Align" in words
    assert "| Table 3: context | vec | `vec` | 0.550 ± 0.050 |" in text
    runs += [{**runs[0], "overlay": "cond_text", "mode": "text", "temporal_guidance": None}]
    for r in runs[:4]:
        r["temporal_guidance"] = 6.0
    ablation.write_report(runs, args, "configs/toy.yaml", "2026-01-01 00:00", "0 0 0", report, [])
    words = " ".join(report.read_text().split())
    assert "guidance 3, temporal guidance 6 in the audio rows" in words
    assert "Status: all overlays finished." in words
    # overlays left out of the sweep (--only) are named: the table is partial, not finished
    ablation.write_report(runs, args, "configs/toy.yaml", "2026-01-01 00:00", "0 0 0", report, ["vec (seed 1)"],
                          ["win2", "win3"])
    words = " ".join(report.read_text().split())
    assert ("Status: **partial**: not run (the sweep stopped before them): `vec (seed 1)`; not in this sweep "
            "(`--only`): `win2`, `win3`." in words)
    ablation.write_report(runs, args, "configs/toy.yaml", "2026-01-01 00:00", "0 0 0", report, [], ["win2"])
    assert "Status: **partial**: not in this sweep (`--only`): `win2`." in " ".join(report.read_text().split())


def test_resume_keeps_only_runs_with_the_same_settings(tmp_path):
    import json
    from types import SimpleNamespace

    path = tmp_path / "ablation.json"
    settings = {"config": "configs/toy.yaml", "num_test": 32, "sample_steps": 8}
    audio = {"mode": "audio", "guidance": 3.0, "temporal_guidance": 6.0}  # configs/toy.yaml's sampler
    runs = [{"overlay": "cond_audio", "seed": 0, "steps": 200, **audio},
            {"overlay": "win5", "seed": 0, "steps": 200, **audio, "shared_with": "cond_audio"},
            {"overlay": "vec", "seed": 0, "steps": 100, **audio},
            {"overlay": "cond_text", "seed": 0, "steps": 0, "mode": "text", "guidance": 3.0, "temporal_guidance": None},
            {"overlay": "mapper2", "seed": 0, "steps": 200, "mode": "audio", "guidance": 3.0}]  # before temporal guidance
    path.write_text(json.dumps({"settings": settings, "rows": [], "runs": runs}))
    args = SimpleNamespace(config=str(REPO / "configs/toy.yaml"), num_test=32, sample_steps=8, max_steps=200, guidance=None,
                           temporal_guidance=None)
    # shared rows are rebuilt from their base run; a run of other steps is trained again; text-only trains nothing
    assert set(ablation.finished_runs(path, args)) == {("cond_audio", 0), ("cond_text", 0)}
    # without --max-steps the base config's (200) is the one to match
    assert set(ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "max_steps": None}))) == {
        ("cond_audio", 0), ("cond_text", 0)}
    assert set(ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "max_steps": 100}))) == {
        ("vec", 0), ("cond_text", 0)}
    assert ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "num_test": 16})) == {}
    assert ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "guidance": 5.0})) == {}
    # temporal guidance applies to the audio rows only; 0 is classifier-free guidance only (recorded None)
    assert set(ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "temporal_guidance": 0.0}))) == {
        ("cond_text", 0), ("mapper2", 0)}
    assert set(ablation.finished_runs(path, SimpleNamespace(**{**vars(args), "temporal_guidance": 8.0}))) == {
        ("cond_text", 0)}
    path.write_text("{")
    import pytest

    with pytest.raises(SystemExit, match="not valid JSON"):
        ablation.finished_runs(path, args)


def test_a_sweep_saves_each_adapter_and_resume_resamples_it_for_other_guidance(tmp_path):
    """Train one run, then ``--resume`` with other guidance: the saved adapter is sampled again, nothing
    trains, and the same guidance as the first run reproduces its figures."""
    import json

    import yaml

    cfg = yaml.safe_load((REPO / "configs/toy.yaml").read_text())
    (ckpt,) = cfg["trainer"]["callbacks"]
    ckpt["init_args"]["every_n_train_steps"] = 1
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "runs")
    cfg["data"]["init_args"].update(root=str(tmp_path / "toy"), num_train=8, num_test=2, batch_size=4)
    base = tmp_path / "toy.yaml"
    base.write_text(yaml.safe_dump(cfg))
    report = tmp_path / "ablation.md"
    common = ["--config", str(base), "--only", "cond_audio", "--seeds", "0", "--max-steps", "2", "--num-test", "2",
              "--sample-steps", "2", "--report", str(report), "--log-root", str(tmp_path / "logs")]

    def run(*extra):
        assert ablation.main([*common, *extra]) == 0
        return json.loads(report.with_suffix(".json").read_text())["runs"]

    (first,) = run()
    adapter = Path(first["adapter"])
    assert adapter == tmp_path / "logs/cond_audio_s0/adapter.safetensors" and adapter.is_file()
    assert first["steps"] == 2 and first["temporal_guidance"] == 6.0
    # the run's checkpoints go beside its adapter, not to the base config's runs/toy/checkpoints
    assert (adapter.parent / "checkpoints/last.ckpt").is_file()
    stamp = adapter.stat().st_mtime_ns

    (cfg_only,) = run("--resume", "--temporal-guidance", "0")
    assert cfg_only["resampled"] and cfg_only["temporal_guidance"] is None and cfg_only["steps"] == 2
    assert cfg_only["train_s"] == first["train_s"] and adapter.stat().st_mtime_ns == stamp  # nothing trained

    (again,) = run("--resume")  # the config's sampler again: resampled, and identical to the trained run
    assert again["resampled"] and again["temporal_guidance"] == 6.0
    for key in ("av_align", "class_accuracy", "event_exact_recall"):
        assert again[key] == first[key] or (again[key] != again[key] and first[key] != first[key])  # NaN == NaN
    (kept,) = run("--resume")  # same settings: kept as is
    assert kept == again

    assert again["adapter_sha256"] == first["adapter_sha256"]

    adapter.write_bytes(adapter.read_bytes() + b" ")  # another adapter in its place: trained afresh
    (fresh,) = run("--resume", "--temporal-guidance", "0")
    assert "resampled" not in fresh and fresh["adapter_sha256"] != first["adapter_sha256"]
    from types import SimpleNamespace

    args = SimpleNamespace(config=str(base), num_test=2, sample_steps=2, max_steps=2, guidance=None, temporal_guidance=8.0)
    assert set(ablation.earlier_runs(report.with_suffix(".json"), args)[1]) == {("cond_audio", 0)}
    adapter.unlink()  # the adapter is gone: nothing to sample again, so it would be trained afresh
    assert ablation.earlier_runs(report.with_suffix(".json"), args) == ({}, {})
