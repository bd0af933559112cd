"""The AudioSet class list shipped as package data."""

from av_lightning.encoders.labels import NUM_AUDIOSET_CLASSES, audioset_label_rows, audioset_labels


def test_shipped_labels_in_predictor_order():
    names = audioset_labels()
    assert len(names) == NUM_AUDIOSET_CLASSES == 527
    assert names[0] == "Speech" and names[1] == "Male speech, man speaking"  # quoted CSV field
    assert names[-1] == "Field recording"
    rows = audioset_label_rows()
    assert rows[0] == (0, "/m/09x0r", "Speech")
    assert len(set(names)) == 527
