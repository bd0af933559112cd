"""End-to-end runs: the installed scripts, two-process DDP, and exact resume."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from av_lightning.data.synthetic import SyntheticDataModule
from tests.conftest import tiny_module

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--data.init_args.num_train=8", "--data.init_args.num_test=2",
        "--data.init_args.num_val=2", "--data.init_args.batch_size=2", "--model.init_args.steps=2"]


def _script(name: str) -> str:
    path = shutil.which(name, path=os.path.dirname(sys.executable))
    if path is None:
        pytest.fail(f"console script {name!r} is not installed next to {sys.executable}; run `pip install -e .`")
    return path


def _run(cmd, tmp_path, **env):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false", **env)
    proc = subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("script", ["lightning", "av-lightning"])
def test_installed_scripts_fit_then_test(script, tmp_path):
    exe = _script(script)
    cfg = str(ROOT / "configs/tiny.yaml")
    root = f"--trainer.default_root_dir={tmp_path}/run"
    _run([exe, "fit", "--config", cfg, root, *FAST], tmp_path)
    ckpts = sorted(Path(tmp_path).rglob("*.ckpt"))  # runs/tiny/checkpoints/last.ckpt under the working dir
    assert ckpts, "fit wrote no checkpoint"
    ckpt = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
    assert all(k.startswith(("mapper.", "tokens.")) for k in ckpt["state_dict"])
    out = _run([exe, "test", "--config", cfg, root, *FAST, f"--ckpt_path={ckpts[-1]}"], tmp_path)
    assert "test" in (out.stdout + out.stderr).lower()


def test_python_dash_m_and_commands_listing(tmp_path):
    out = _run([sys.executable, "-m", "av_lightning", "commands"], tmp_path)
    assert "av-lightning COMMAND" in out.stdout and "  generate " in out.stdout


def test_two_process_ddp_ends_with_identical_weights(tmp_path):
    exe = _script("av-lightning")
    cfg = str(ROOT / "configs/tiny.yaml")
    _run([exe, "fit", "--config", cfg, f"--trainer.default_root_dir={tmp_path}/run", *FAST,
          "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.limit_val_batches=0",
          "--trainer.callbacks+=tests.helpers.SaveAdapterPerRank", f"--trainer.callbacks.out_dir={tmp_path}/w"],
         tmp_path)
    w0 = torch.load(tmp_path / "w/rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "w/rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys() and len(w0) > 0
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    # and they trained: not the initial weights
    init = tiny_module().trainable_state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0 if k in init and init[k].shape == w0[k].shape)


def _cosine(optimizer):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)


def _fit(tmp_path, max_steps, ckpt_path=None, save_every=None, lr_scheduler=None, module_out=None):
    pl.seed_everything(0)
    module = tiny_module(num_frames=4, fps=4.0, lr_scheduler=lr_scheduler)
    if module_out is not None:
        module_out.append(module)
    data = SyntheticDataModule(num_train=4, num_val=2, num_test=2, num_frames=4, fps=4.0, size=8, batch_size=2)
    callbacks = []
    if save_every:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2,
                                                      save_top_k=-1, save_last=False))
    trainer = pl.Trainer(accelerator="cpu", max_steps=max_steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=bool(save_every), callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module.trainable_state_dict()


@pytest.mark.parametrize("lr_scheduler", [None, _cosine], ids=["constant", "cosine"])
def test_resume_from_mid_run_checkpoint_matches_uninterrupted_run(tmp_path, lr_scheduler):
    # 2 steps per epoch; the checkpoint after epoch 1 (step 2) is resumed to step 4 (the schedule's
    # state travels in the checkpoint).
    full = _fit(tmp_path / "a", max_steps=4, lr_scheduler=lr_scheduler)
    _fit(tmp_path / "b", max_steps=2, save_every=True, lr_scheduler=lr_scheduler)
    mid = sorted((tmp_path / "b/ckpt").glob("*step=2*.ckpt"))
    assert mid, list((tmp_path / "b/ckpt").glob("*"))
    resumed = _fit(tmp_path / "c", max_steps=4, ckpt_path=str(mid[0]), lr_scheduler=lr_scheduler)
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0)


def test_lr_scheduler_steps_every_optimizer_step(tmp_path):
    """A cosine schedule over 4 steps, 3 steps trained (two epochs of 2 batches): the learning rate is
    the closed form lr0 (1 + cos(pi t / T)) / 2 at t = 3, not the epoch count's value."""
    import math

    modules = []
    _fit(tmp_path, max_steps=3, lr_scheduler=_cosine, module_out=modules)
    lr = modules[0].trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(1e-3 * (1 + math.cos(math.pi * 3 / 4)) / 2, rel=1e-9)


def test_a_schedule_shorter_than_max_steps_is_refused_before_training(tmp_path):
    def one_cycle(optimizer):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=2)

    with pytest.raises(ValueError, match=r"total_steps=2 .*max_steps=3.*init_args.total_steps=3"):
        _fit(tmp_path, max_steps=3, lr_scheduler=one_cycle)


def _overlay(tmp_path, name, interrupt_at=None):
    import yaml

    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(tmp_path / name / "checkpoints"), "every_n_train_steps": 4,
                                "save_last": True, "save_on_exception": True}}]
    if interrupt_at is not None:
        callbacks.append({"class_path": "tests.helpers.InterruptAt", "init_args": {"step": interrupt_at}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"default_root_dir": str(tmp_path / name), "logger": False,
                                                "limit_val_batches": 0, "max_steps": 6, "callbacks": callbacks}}))
    return ["fit", "--config", str(ROOT / "configs/tiny.yaml"), "--config", str(path), "--model.init_args.steps=1"]


def test_ctrl_c_mid_epoch_then_resume_gives_the_uninterrupted_run(tmp_path):
    """4 batches per epoch, max_steps 6: Ctrl-C before step 5 (epoch 1, batch 1) saves last.ckpt;
    resuming from it trains exactly to step 6 and ends with the uninterrupted run's weights."""
    import signal

    from av_lightning.cli import cli_main

    full = cli_main(_overlay(tmp_path, "full"))
    assert full.trainer.global_step == 6
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C once it has handled one
    try:
        with pytest.raises(SystemExit):
            cli_main(_overlay(tmp_path, "cut", interrupt_at=5))
    finally:
        signal.signal(signal.SIGINT, handler)
    last = tmp_path / "cut/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 5
    resumed = cli_main(_overlay(tmp_path, "resumed") + [f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 6
    want, got = full.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
