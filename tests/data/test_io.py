import pytest
import torch

from av_lightning.data.clips import ClipRecord, ClipSpec, clip_start, load_clip
from av_lightning.data.io import (
    MediaError,
    choose_bucket,
    probe,
    read_audio,
    read_frames,
    target_size,
    write_video,
)
from tests.data.av_media_helpers import write_clip, write_wav


@pytest.fixture(scope="module")
def flash_click(tmp_path_factory):
    """30 fps video with a white frame at 0.5 s and a click at 0.5 s in 44.1 kHz stereo AAC,
    plus the same click in a separate 44.1 kHz stereo wav."""
    d = tmp_path_factory.mktemp("flash")
    mp4 = write_clip(d / "a.mp4", seconds=2.0, fps=30, sample_rate=44100, channels=2, flash_at=0.5, click_at=0.5)
    wav = write_wav(d / "a.wav", seconds=2.0, sample_rate=44100, channels=2, click_at=0.5)
    return mp4, wav


@pytest.mark.parametrize("start", [0.0, 0.25, 0.125])
@pytest.mark.parametrize("audio_source", ["mp4", "wav"])
def test_flash_and_click_align_after_resampling(flash_click, start, audio_source):
    mp4, wav = flash_click
    spec = ClipSpec(num_frames=24, fps=24, size=32, sample_rate=16000)
    rec = ClipRecord(id="a", video=str(mp4), audio=str(mp4 if audio_source == "mp4" else wav), label="x", split="test")
    clip = load_clip(rec, spec, start)
    frames, audio = clip["frames"], clip["audio"]
    assert frames.shape == (24, 3, 32, 32) and frames.dtype == torch.uint8
    assert audio.shape == (16000,) and audio.dtype == torch.float32
    brightness = frames.float().mean(dim=(1, 2, 3))
    flash = int(brightness.argmax())
    assert flash == round((0.5 - start) * 24)
    assert (brightness > 128).sum() == 1  # exactly one output frame shows the flash
    click = int(audio.abs().argmax())
    expected = round((0.5 - start) * 16000)
    assert abs(click - expected) <= 2, (click, expected)
    # frame k starts at audio sample k * sample_rate / fps
    assert abs(click - flash * 16000 / 24) <= 2


def test_probe_and_resize_policy(flash_click, tmp_path):
    mp4, wav = flash_click
    info = probe(mp4)
    assert info.has_audio and info.size == (48, 64) and info.fps == pytest.approx(30)
    assert info.duration == pytest.approx(2.0, abs=0.05) and info.sample_rate == 44100
    winfo = probe(wav)
    assert winfo.fps is None and winfo.has_audio and winfo.audio_duration == pytest.approx(2.0, abs=1e-3)
    assert target_size((48, 64), 32) == ((32, 43), (32, 32))
    assert target_size((48, 64), (24, 40)) == ((30, 40), (24, 40))
    assert choose_bucket((48, 64), [(32, 32), (24, 40), (40, 24)]) == (24, 40)
    frames = read_frames(mp4, 0.0, 3, 24, size=(24, 40))
    assert frames.shape == (3, 3, 24, 40)
    bucketed = read_frames(mp4, 0.0, 3, 24, buckets=[(32, 32), (40, 24)])
    assert bucketed.shape == (3, 3, 32, 32)


def test_write_video_roundtrip_chw_and_mono(tmp_path):
    frames = torch.zeros(12, 3, 32, 48, dtype=torch.uint8)
    frames[6] = 200
    audio = torch.zeros(8000)
    audio[4000] = 0.9
    path = write_video(tmp_path / "o.mp4", frames, 24, audio=audio, sample_rate=16000)
    info = probe(path)
    assert info.size == (32, 48) and info.has_audio and info.fps == pytest.approx(24)
    back = read_frames(path, 0.0, 12, 24)
    assert int(back.float().mean(dim=(1, 2, 3)).argmax()) == 6
    assert abs(int(read_audio(path, 0.0, 8000).abs().argmax()) - 4000) <= 2


def test_read_past_end_and_bad_files(flash_click, tmp_path):
    mp4, _ = flash_click
    with pytest.raises(MediaError, match="a.mp4"):
        read_frames(mp4, 1.5, 24, 24)
    with pytest.raises(MediaError, match="a.mp4"):
        read_audio(mp4, 1.5, 16000)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaError, match="junk.mp4"):
        probe(junk)
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_clip_start_policy():
    spec = ClipSpec(num_frames=24, fps=24, sample_rate=16000)
    # evaluation: the middle, fixed
    assert clip_start(3.0, spec, train=False) == pytest.approx(1.0)
    assert clip_start(3.0, spec, train=False, eval_start="start") == 0.0
    # training: reproducible per (seed, epoch, index), different across epochs, sample-aligned
    a = clip_start(10.0, spec, True, seed=1, epoch=0, index=3)
    assert a == clip_start(10.0, spec, True, seed=1, epoch=0, index=3)
    assert a != clip_start(10.0, spec, True, seed=1, epoch=1, index=3)
    assert 0 <= a <= 9.0 and float(a * 16000).is_integer()
    # K fixed candidates
    picks = {clip_start(10.0, spec, True, seed=1, epoch=e, index=3, train_starts=2) for e in range(20)}
    assert len(picks) == 2


def test_read_clip_opens_a_video_with_its_own_sound_once(tmp_path, monkeypatch):
    import av

    from av_lightning.data import io

    path = write_clip(tmp_path / "c.mp4", seconds=1.5, fps=30, sample_rate=16000, channels=1, seed=3)
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    for start in (0.0, 0.4):
        frames, audio = io.read_clip(path, path, start, 12, 24.0, 8000, 16000, size=32)
        torch.testing.assert_close(frames, io.read_frames(path, start, 12, 24.0, 32), rtol=0, atol=0)
        torch.testing.assert_close(audio, io.read_audio(path, start, 8000, 16000), rtol=0, atol=0)
    assert opened.count(str(path)) == 2 + 4  # one open per read_clip, then the reference reads
