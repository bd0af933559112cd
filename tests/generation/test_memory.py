"""Long audio needs no more memory than short audio: the window batch is bounded by default."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, resource, sys, torch
from tests.conftest import tiny_module
from tests.helpers import sample_one
torch.manual_seed(0)
model = tiny_module(num_frames=4, fps=2.0).eval()
seconds, window_batch = float(sys.argv[1]), json.loads(sys.argv[2])
audio = 0.2 * torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0))
frames = sample_one(model, audio, height=24, width=24, steps=1, window_batch=window_batch)
assert frames.shape == (int(seconds * 2), 3, 24, 24), frames.shape
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def peak_kib(seconds: float, window_batch=None) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seconds), json.dumps(window_batch)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"]


def test_sixty_seconds_peak_within_1_3x_of_five_seconds():
    short, long = peak_kib(5.0), peak_kib(60.0)
    assert long <= 1.3 * short, (short, long)
