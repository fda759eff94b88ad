"""The one label vocabulary of ferlab and the explicit index maps of every dataset.

Canonical order (index = position): ``neutral, happy, sad, surprise, fear, disgust, angry, contempt``.
A 7-class label set is the first seven names (no contempt); an 8-class set is all eight. Every dataset
reader converts its native labels to canonical names with the maps below, then to indices into the
dataset's class tuple, which is always in canonical order. Models store their class tuple with their
weights, so predictions always carry names, never bare indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .errors import DataError

CANONICAL: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")
SEVEN: tuple[str, ...] = CANONICAL[:7]
EIGHT: tuple[str, ...] = CANONICAL

#: FER2013 ``emotion`` column: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
FER2013: dict[int, str] = {
    0: "angry",
    1: "disgust",
    2: "fear",
    3: "happy",
    4: "sad",
    5: "surprise",
    6: "neutral",
}

#: FER+ vote columns of ``fer2013new.csv`` in file order (the last two are not emotions).
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
#: FER+ emotion columns 0..7 to canonical names (8 unknown and 9 NF are not labels).
FERPLUS: dict[int, str] = {
    0: "neutral", 1: "happy", 2: "surprise", 3: "sad", 4: "angry", 5: "disgust", 6: "fear", 7: "contempt",
}  # fmt: skip

#: RAF-DB basic ``list_patition_label.txt``: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral.
RAFDB: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happy",
    5: "sad",
    6: "angry",
    7: "neutral",
}

#: AffectNet ``expression``: 0 Neutral .. 7 Contempt; 8 None, 9 Uncertain, 10 No-Face are dropped.
AFFECTNET: dict[int, str] = {
    0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "angry", 7: "contempt",
}  # fmt: skip
AFFECTNET_DROPPED: dict[int, str] = {8: "none", 9: "uncertain", 10: "no-face"}

#: CK+ emotion codes of its ``Emotion/*.txt`` files: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear,
#: 5 happy, 6 sadness, 7 surprise.
CKPLUS: dict[int, str] = {
    0: "neutral", 1: "angry", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sad", 7: "surprise",
}  # fmt: skip

#: Folder and file names seen in the wild, mapped to canonical names (lower-cased before lookup).
SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust",
    "angry": "angry", "anger": "angry",
    "contempt": "contempt",
}  # fmt: skip


def class_names(num_classes: int) -> tuple[str, ...]:
    """The canonical class tuple for 7 or 8 classes."""
    if num_classes == 7:
        return SEVEN
    if num_classes == 8:
        return EIGHT
    raise DataError(f"no canonical label set has {num_classes} classes; use 7 (no contempt) or 8")


def canonical_name(name: str) -> str:
    """Map a folder or label name (any case, common synonyms) to its canonical name."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key in SYNONYMS:
        return SYNONYMS[key]
    raise DataError(f"label {name!r} is not an expression name; known: {', '.join(sorted(set(SYNONYMS)))}")


def to_indices(names: Iterable[str], classes: Sequence[str] = SEVEN) -> np.ndarray:
    """Canonical names -> int64 indices into ``classes``."""
    pos = {c: i for i, c in enumerate(classes)}
    out = []
    for n in names:
        if n not in pos:
            raise DataError(f"label {n!r} is not in the class set {tuple(classes)}")
        out.append(pos[n])
    return np.asarray(out, dtype=np.int64)


def map_native(
    native: np.ndarray, mapping: dict[int, str], classes: Sequence[str], source: str
) -> np.ndarray:
    """Native integer labels of a dataset -> indices into ``classes``; names the first bad value."""
    native = np.asarray(native)
    lut = np.full(max(max(mapping), int(native.max(initial=0))) + 1, -1, dtype=np.int64)
    pos = {c: i for i, c in enumerate(classes)}
    for k, v in mapping.items():
        if v in pos:
            lut[k] = pos[v]
    bad = (native < 0) | (native >= len(lut))
    if not bad.any():
        bad = lut[native] < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: label {int(native[i])} at item {i} is out of range; valid: {sorted(mapping)}"
        )
    return lut[native]


def remap(labels: np.ndarray, src: Sequence[str], dst: Sequence[str]) -> np.ndarray:
    """Indices into ``src`` -> indices into ``dst`` (-1 where the class is absent from ``dst``)."""
    pos = {c: i for i, c in enumerate(dst)}
    lut = np.array([pos.get(c, -1) for c in src], dtype=np.int64)
    return lut[np.asarray(labels, dtype=np.int64)]
