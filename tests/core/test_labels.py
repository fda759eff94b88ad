"""Known answers for the label vocabulary and every dataset's index map."""

import numpy as np
import pytest

from ferlab import labels as L
from ferlab.errors import DataError


def test_canonical_order():
    assert L.CANONICAL == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")
    assert L.class_names(7) == L.CANONICAL[:7]
    assert L.class_names(8) == L.CANONICAL
    with pytest.raises(DataError):
        L.class_names(6)


def test_fer2013_map():
    # 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral
    got = L.map_native(np.arange(7), L.FER2013, L.SEVEN, "t")
    assert [L.SEVEN[i] for i in got] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert got.tolist() == [6, 5, 4, 1, 2, 3, 0]


def test_ferplus_map():
    assert L.FERPLUS_COLUMNS[:8] == (
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
    )
    got = L.map_native(np.arange(8), L.FERPLUS, L.EIGHT, "t")
    assert got.tolist() == [0, 1, 3, 2, 6, 5, 4, 7]


def test_rafdb_map():
    got = L.map_native(np.arange(1, 8), L.RAFDB, L.SEVEN, "t")
    assert [L.SEVEN[i] for i in got] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    with pytest.raises(DataError, match="label 0"):
        L.map_native(np.array([0]), L.RAFDB, L.SEVEN, "t")


def test_affectnet_map():
    got = L.map_native(np.arange(8), L.AFFECTNET, L.EIGHT, "t")
    assert got.tolist() == list(range(8))  # AffectNet's order is the canonical order
    with pytest.raises(DataError, match="out of range"):
        L.map_native(np.array([7]), L.AFFECTNET, L.SEVEN, "t")  # contempt absent from 7 classes
    assert set(L.AFFECTNET_DROPPED) == {8, 9, 10}


def test_ckplus_map():
    got = L.map_native(np.arange(8), L.CKPLUS, L.EIGHT, "t")
    assert [L.EIGHT[i] for i in got] == [
        "neutral",
        "angry",
        "contempt",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
    ]


def test_synonyms_and_remap():
    assert L.canonical_name("Fearful") == "fear"
    assert L.canonical_name("disgusted") == "disgust"
    assert L.canonical_name("HAPPINESS") == "happy"
    with pytest.raises(DataError, match="not an expression"):
        L.canonical_name("banana")
    assert L.remap(np.array([7, 0]), L.EIGHT, L.SEVEN).tolist() == [-1, 0]


def test_out_of_range_label_message():
    with pytest.raises(DataError, match="label 9 at item 1"):
        L.map_native(np.array([0, 9]), L.FER2013, L.SEVEN, "fer.csv")
