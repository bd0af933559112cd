"""av_lightning: audio-to-video generation with TempoTokens on PyTorch Lightning."""
__version__ = "0.1.0"
