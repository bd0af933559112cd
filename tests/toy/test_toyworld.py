"""The toy world: determinism, event rules, audio onsets on event frames, the files' layout."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from av_lightning.data import toyworld as tw


def test_clip_is_deterministic_from_seed():
    a, b, c = tw.toy_clip(11), tw.toy_clip(11), tw.toy_clip(12)
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["audio"], b["audio"])
    assert a["events"] == b["events"] and a["label"] == b["label"]
    assert not torch.equal(a["frames"], c["frames"])
    assert a["frames"].shape == (tw.NUM_FRAMES, 3, tw.SIZE, tw.SIZE) and a["frames"].dtype == torch.uint8
    assert a["audio"].shape == (tw.NUM_SAMPLES,) and a["audio"].dtype == torch.float32
    assert tw.toy_clip(3, "bass")["label"] == "bass"


def test_batch_is_deterministic_and_matches_the_geometry():
    x = tw.toy_batch(8, torch.Generator().manual_seed(0))
    y = tw.toy_batch(8, torch.Generator().manual_seed(0))
    assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["label"], y["label"])
    assert x["frames"].shape == (8, tw.NUM_FRAMES, 3, tw.SIZE, tw.SIZE)
    assert x["events"].shape == (8, tw.NUM_FRAMES)


def test_events_are_in_range_and_apart():
    seen = set()
    for seed in range(300):
        ev = tw.toy_clip(seed)["events"]
        assert 1 <= len(ev) <= tw.MAX_EVENTS
        assert all(tw.FIRST_EVENT <= e <= tw.LAST_EVENT for e in ev)
        assert all(b - a >= tw.MIN_GAP for a, b in zip(ev, ev[1:]))
        seen.add(len(ev))
    assert seen == {1, 2, 3}


@pytest.mark.parametrize("cls", tw.CLASSES)
def test_audio_onsets_at_event_frames(cls):
    for seed in range(4):
        clip = tw.toy_clip(seed, cls)
        audio = clip["audio"].numpy()
        win = 320  # 20 ms
        loud = np.zeros_like(audio, dtype=bool)
        for e in clip["events"]:
            s = round(e / tw.FPS * tw.SAMPLE_RATE)
            before = np.sqrt(np.mean(audio[s - win : s] ** 2))
            after = np.sqrt(np.mean(audio[s : s + win] ** 2))
            assert after > 20 * before, (cls, e, before, after)
            loud[s : s + int(0.3 * tw.SAMPLE_RATE)] = True
        # nothing but the quiet floor away from the events
        assert np.abs(audio[~loud]).max() < 0.01


def test_object_jumps_up_on_event_frames():
    clip = tw.toy_clip(5, "drum")
    rows = [(f[0] > 150).nonzero()[:, 0].float().mean().item() for f in clip["frames"]]
    moved = [k for k in range(1, tw.NUM_FRAMES) if rows[k] < rows[k - 1] - 2.5]
    assert moved == clip["events"]


def test_object_flashes_on_event_frames_only():
    for seed in range(24):
        clip = tw.toy_clip(seed)
        colour = np.array(tw.COLOURS[clip["label"]], dtype=np.float64)
        flashed = np.round(colour + tw.FLASH * (255 - colour))
        for f, frame in enumerate(clip["frames"].numpy()):
            pixels = frame.reshape(3, -1).T
            want = flashed if f in clip["events"] else colour
            # the object's pixels carry exactly the class colour, flashed on event frames
            assert (np.abs(pixels - want).sum(axis=1) == 0).sum() >= 12, (seed, f)
            assert not (np.abs(pixels - (colour if f in clip["events"] else flashed)).sum(axis=1) == 0).any()


def test_object_grows_on_event_frames_and_the_frame_after():
    # object pixels per frame on a flat background: the shape, or its mask dilated by GROW
    for name, plain, grown in (("drum", 25, 49), ("bass", 27, 39)):
        cls = tw.CLASSES.index(name)
        events = torch.zeros(1, tw.NUM_FRAMES, dtype=torch.bool)
        events[0, [3, 8]] = True
        gy, gx = tw.GROW[name]
        assert grown == (2 * tw.HALF_EXTENT[name][0] + 1 + 2 * gy) * (2 * tw.HALF_EXTENT[name][1] + 1 + 2 * gx)
        params = {"label": torch.tensor([cls]), "events": events, "cy": torch.tensor([10]), "cx": torch.tensor([8]),
                  "level": torch.tensor([20]), "noise": torch.zeros(1, tw.SIZE, tw.SIZE, dtype=torch.long)}
        pixels = (tw.render(params)[0] != 20).any(1).flatten(1).sum(1).tolist()
        assert pixels == [grown if f in (3, 4, 8, 9) else plain for f in range(tw.NUM_FRAMES)], name
        # without the look the object keeps its size
        assert set((tw.render(params, flash=False)[0] != 20).any(1).flatten(1).sum(1).tolist()) == {plain}


def test_a_world_of_another_version_is_refused(tmp_path):
    tw.write_toy_world(tmp_path, num_train=1, num_test=1, progress=False)
    assert tw.check_version(tmp_path)["version"] == tw.WORLD_VERSION
    dm = tw.ToyWorldDataModule(str(tmp_path), batch_size=1, val_size=0)
    dm.prepare_data()  # the current version is reused as it is
    (tmp_path / tw.WORLD_FILE).write_text('{"version": 1}')
    with pytest.raises(ValueError, match="version 1.*delete"):
        dm.prepare_data()
    (tmp_path / tw.WORLD_FILE).unlink()  # a world written before world.json existed
    with pytest.raises(ValueError, match="without world.json"):
        dm.prepare_data()


def test_written_world_loads_through_the_datamodule(tmp_path):
    from av_lightning.data.datamodules import AudioVideoDataModule

    manifest = tw.write_toy_world(tmp_path, num_train=4, num_test=2, seed=3, progress=False)
    rows = list(csv.DictReader(open(manifest)))
    assert [r["set"] for r in rows] == ["train"] * 4 + ["test"] * 2
    assert list(rows[0]) == ["ytid", "start_time", "class", "set", "events"]
    for r in rows:
        assert (tmp_path / "video" / f"{r['ytid']}.mp4").is_file() and (tmp_path / "audio" / f"{r['ytid']}.wav").is_file()
    dm = AudioVideoDataModule(str(tmp_path), manifest="toy.csv", fps=tw.FPS, num_frames=tw.NUM_FRAMES, size=tw.SIZE,
                              batch_size=2, num_workers=0, val_size=0, eval_start="start")
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["frames"].shape == (2, tw.NUM_FRAMES, 3, tw.SIZE, tw.SIZE)
    assert batch["audio"].shape == (2, tw.NUM_SAMPLES)
    ref = tw.toy_clip(tw.clip_seed(3, "test", 0), tw.CLASSES[0])
    assert batch["label"][0] == ref["label"]
    # x264 at crf 0 keeps luma; yuv420p chroma costs a little at colour edges
    assert (batch["frames"][0].float() - ref["frames"].float()).abs().mean() < 8
    assert torch.allclose(batch["audio"][0], ref["audio"], atol=2e-4)


def test_toy_datamodule_writes_the_world_on_first_use(tmp_path):
    root = tmp_path / "toy"
    dm = tw.ToyWorldDataModule(str(root), num_train=4, num_test=2, batch_size=2, val_size=1)
    dm.prepare_data()
    assert (root / "toy.csv").is_file()
    dm.setup("fit")
    assert len(dm.records["train"]) == 3 and len(dm.records["val"]) == 1


def test_check_world_reads_events_back_from_the_files(tmp_path):
    from av_lightning.toy.check_world import check_world

    tw.write_toy_world(tmp_path, num_train=0, num_test=8, seed=0, progress=False)
    out = check_world(tmp_path, "test", "paper")
    assert out["clips"] == 8 and out["av_align_empty"] == 0 and out["av_align"] > 0.9
    # through the mp4 round trip the probe finds the flash and the jump on every event frame
    assert out["event_exact_recall"] == 1.0 and out["flash_exact_precision"] == 1.0
    (tmp_path / tw.WORLD_FILE).unlink()
    with pytest.raises(ValueError, match="without world.json"):
        check_world(tmp_path, "test", "paper")
