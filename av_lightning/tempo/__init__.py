"""The TempoTokens method as plain ``nn.Module``s (no Lightning here)."""

from av_lightning.tempo.attention_pool import AttentivePool
from av_lightning.tempo.mapper import AudioMapper, pool_time
from av_lightning.tempo.tokens import TempoTokens
from av_lightning.tempo.windows import expanding_windows, window_means, window_radii

__all__ = ["AttentivePool", "AudioMapper", "TempoTokens", "expanding_windows", "pool_time", "window_means", "window_radii"]
