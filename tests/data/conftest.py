"""Fixtures for the data tests; the file writers live in ``av_media_helpers``."""

import pytest

from av_media_helpers import TinyAudioEncoder


@pytest.fixture
def tiny_audio_encoder():
    return TinyAudioEncoder()
