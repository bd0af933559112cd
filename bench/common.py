"""Timing and reporting helpers shared by the benchmarks (tables printed and written as markdown)."""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeat: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_interleaved(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 1,
                     repeat: int = 5) -> dict[str, float]:
    """Median wall seconds of each function, timed in alternating rounds.

    Alternating (a, b, a, b, ...) instead of (a, a, ..., b, b, ...) keeps a ratio fair when the
    machine's load drifts during the run.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset, or the process's peak RSS on the CPU (GiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(path: str | None, title: str, body: str) -> str:
    """Print a results page and write it to ``path`` (markdown) with the command that made it."""
    script = Path(sys.argv[0])
    if script.is_absolute() and script.is_relative_to(Path.cwd()):
        script = script.relative_to(Path.cwd())
    command = " ".join(["python", str(script), *sys.argv[1:]])
    text = f"# {title}\n\nCommand: `{command}`\n\n{body}\n"
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def unet_floor(backbone, x0: torch.Tensor, text: torch.Tensor) -> Callable[[], None]:
    """The floor of a training step: the frozen UNet's forward + backward with plain text
    conditioning ``(B, N, d)`` (the gradient taken with respect to it, so backward runs through
    the UNet), on latents ``x0`` of the adapter's shapes."""
    objective = backbone.objective

    def run() -> None:
        cond = text.detach().clone().requires_grad_()
        ex = objective.example(x0)
        pred = backbone.denoise(ex.noisy, ex.timesteps, cond)
        torch.nn.functional.mse_loss(pred, ex.target).backward()

    return run


#: BEATs' full-size output: 12 layers of 768 at 6.25 steps per second (160 ms patches).
BEATS_LAYERS, BEATS_WIDTH, BEATS_RATE = 12, 768, 6.25


class CachedStatesEncoder(torch.nn.Module):
    """Stands in for BEATs' shape only; the benchmark feeds cached states, so it never runs."""

    sample_rate = 16000
    num_layers = BEATS_LAYERS
    hidden_size = BEATS_WIDTH
    feature_size = BEATS_LAYERS * BEATS_WIDTH

    def forward(self, *args, **kwargs):
        raise RuntimeError("the GPU benchmark runs on cached audio states")
