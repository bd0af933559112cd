"""``make demo``'s scoring and report on a small world: a saved adapter scored without training."""

from __future__ import annotations

from pathlib import Path

from av_lightning.toy import demo

REPO = Path(__file__).resolve().parents[2]


def test_demo_scores_a_saved_adapter_and_writes_the_report(tmp_path):
    world = [f"--data.init_args.root={tmp_path / 'toy'}", "--data.init_args.num_train=2",
             "--data.init_args.num_test=2", "--trainer.logger=false"]
    cli = demo.fit([str(REPO / "configs/toy.yaml")], world, run=False)
    adapter = tmp_path / "adapter.safetensors"
    cli.model.save_adapter(adapter)  # the adapter as initialised (seed 0)

    report = tmp_path / "toy.md"
    rc = demo.main(["--adapter", str(adapter), "--num-test", "2", "--sample-steps", "1", "--report", str(report),
                    "--samples", str(tmp_path / "samples"), *world])
    assert rc == 0
    text = report.read_text()
    assert f"none: the saved adapter `{adapter}` was scored" in text
    # the config's sampler (guidance 3) is the one reported, and ground truth scores exactly on the probe
    assert "guidance 3.0" in text
    assert "| ground truth | 1.000 | 1.000 | 1.000 |" in text
    for _, label in demo.CONDITIONS:
        assert f"| {label} |" in text
    assert "bar 0.9:" in text and (tmp_path / "toy_contact_sheet.png").stat().st_size > 0
    assert len(list((tmp_path / "samples").glob("*.mp4"))) == 2 * (1 + len(demo.CONDITIONS))


def test_adapter_that_is_missing_is_named(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="no such file"):
        demo.main(["--adapter", str(tmp_path / "nope.safetensors"), "--report", ""])


def test_training_text_names_the_schedule_and_its_peak():
    from types import SimpleNamespace

    import torch

    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.AdamW(p, lr=0.003)
    plain = SimpleNamespace(optimizers=[opt], lr_scheduler_configs=[])
    assert demo.training_text(plain) == "AdamW lr 0.003"
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.004, total_steps=200, pct_start=0.05)
    cycled = SimpleNamespace(optimizers=[opt], lr_scheduler_configs=[SimpleNamespace(scheduler=sched)])
    assert demo.training_text(cycled) == "AdamW, OneCycleLR (peak lr 0.004, 200 steps)"
