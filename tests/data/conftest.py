"""Fixtures for the data tests; the file writers live in ``av_media_helpers``."""

import pytest

from tests.data.av_media_helpers import TinyAudioEncoder


@pytest.fixture
def tiny_audio_encoder():
    return TinyAudioEncoder()
