"""One sampling path: `lightning predict` and `av-lightning generate` make the same video for a clip."""

import zlib
from pathlib import Path

import numpy as np
import yaml

from av_lightning import cli
from av_lightning.data.io import write_audio
from av_lightning.data.synthetic import SyntheticDataModule

ROOT = Path(__file__).resolve().parents[1]


def decode(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_predict_and_generate_give_identical_frames(tmp_path):
    overlay = tmp_path / "run.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {
        "default_root_dir": str(tmp_path), "logger": False, "max_steps": 2, "limit_val_batches": 0,
        "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                       "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}},
                      {"class_path": "av_lightning.callbacks.WriteVideos",
                       "init_args": {"out_dir": str(tmp_path / "predicted")}}]}}))
    base = ["--config", str(ROOT / "configs/tiny.yaml"), "--config", str(overlay)]
    cli.cli_main(["fit", *base])
    ckpt = tmp_path / "ckpt/last.ckpt"
    cli.cli_main(["predict", *base, f"--ckpt_path={ckpt}", "--data.init_args.num_test=2"])

    data = SyntheticDataModule(num_test=2, num_frames=8, fps=8.0, size=16)  # configs/tiny.yaml's test clips
    data.setup("predict")
    test = data.splits["test"]
    for item in (test[i] for i in range(len(test))):
        wav = tmp_path / f"{item['id']}.wav"
        write_audio(wav, item["audio"], 16000, codec="pcm_f32le")  # float: the very samples predict used
        seed = zlib.crc32(item["id"].encode()) % 2**31  # the clip's seed: model seed 0 + crc32(id)
        out = tmp_path / "generated" / f"{item['id']}.mp4"
        assert cli.main(["generate", "--audio", str(wav), "--checkpoint", str(ckpt), "--seed", str(seed),
                         "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
        predicted = decode(tmp_path / "predicted" / f"{item['id']}.mp4")
        assert predicted.shape == (8, 16, 16, 3)
        np.testing.assert_array_equal(decode(out), predicted)
