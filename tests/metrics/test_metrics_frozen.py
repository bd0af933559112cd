"""Frozen feature networks stay frozen and out of checkpoints; metrics pickle."""

from __future__ import annotations

import pickle

import torch
from torch import nn

from av_lightning.metrics import CLIPSIM, FVD, AVAlign, FrozenNet, VideoInceptionScore
from tests.metrics.metric_helpers import FPS, SAMPLE_RATE, TinyVideoNet, av_batch, random_videos


def all_metrics(clip_dir) -> dict[str, nn.Module]:
    return {
        "fvd": FVD(TinyVideoNet(out=8), num_features=8),
        "is": VideoInceptionScore(TinyVideoNet(out=5, head="probs"), splits=2),
        "clipsim": CLIPSIM(clip_dir),
        "av_align": AVAlign(mode="reference"),
    }


def feed(metrics: dict, seed: int = 0) -> None:
    videos, audio = av_batch(seeds=(seed, seed + 1))
    videos = videos[:, :16, :, ::2, ::2]  # 16 frames of 32x32 for the tiny networks
    audio = audio[:, : int(16 / FPS * SAMPLE_RATE)]
    for metric in metrics.values():
        metric.update_from_clips(
            fake=videos,
            real=videos.flip(0),
            audio=audio,
            texts=["drums", "rain"],
            fps=FPS,
            sample_rate=SAMPLE_RATE,
        )


class Holder(nn.Module):
    """A stand-in for the LightningModule: trainable weights plus a list of metrics."""

    def __init__(self, metrics: dict) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.metrics = nn.ModuleDict(metrics)


def test_networks_stay_in_eval_mode_and_out_of_state_dict(clip_dir):
    holder = Holder(all_metrics(clip_dir))
    holder.train()
    nets = [m for m in holder.modules() if isinstance(m, FrozenNet)]
    assert len(nets) == 3
    for net in nets:
        assert not net.module.training
        assert all(not p.requires_grad for p in net.module.parameters())
    # Only the trainable layer is saved, optimised and loaded strictly.
    assert set(holder.state_dict()) == {"layer.weight", "layer.bias"}
    assert [n for n, _ in holder.named_parameters()] == ["layer.weight", "layer.bias"]
    Holder(all_metrics(clip_dir)).load_state_dict(holder.state_dict(), strict=True)
    # .to() still reaches the hidden networks.
    holder.to(torch.float64)
    assert all(next(n.module.parameters()).dtype == torch.float64 for n in nets)


def test_persistent_net_is_saved_when_wanted():
    fvd = FVD(TinyVideoNet(out=8), num_features=8, persistent_net=True)
    assert any(k.startswith("extractor.net.") for k in fvd.state_dict())


def test_dropout_would_matter_but_eval_mode_keeps_outputs_fixed():
    net = TinyVideoNet(out=5, head="probs")
    metric = VideoInceptionScore(net, splits=2)
    metric.train()
    videos = random_videos(4)
    torch.testing.assert_close(
        metric.class_probabilities(videos), metric.class_probabilities(videos)
    )


def test_metrics_pickle_with_their_state(clip_dir):
    metrics = all_metrics(clip_dir)
    feed(metrics)
    for name, metric in metrics.items():
        clone = pickle.loads(pickle.dumps(metric))
        torch.testing.assert_close(clone.compute(), metric.compute(), msg=name)


def test_torchscript_extractor_by_path_pickles(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(TinyVideoNet(out=8)).save(str(path))
    fvd = FVD(path, num_features=8, extractor_kwargs={})
    videos = random_videos(4)
    fvd.update(videos, real=True)
    fvd.update(random_videos(4, seed=1), real=False)
    assert "_hidden_net" not in fvd.extractor.__getstate__()  # the path travels, not the module
    clone = pickle.loads(pickle.dumps(fvd))
    torch.testing.assert_close(clone.compute(), fvd.compute())
    assert not clone.extractor.module.training
