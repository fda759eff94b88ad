"""Berindeie's (2024) dynamic prompt generator: a template whose slots are drawn from pools per emotion.

The template, the negative prompt and the pools live in ``prompt_pools.yaml`` (package data); pass your own
YAML to override any part of them. Each image ``i`` of an emotion gets the generation seed
``start_seed + offset(emotion) + 200 * i`` (the paper increases the seed by 200 after every image;
``offset`` is the emotion's canonical index 0..7, which keeps every class's seeds distinct), and its slots
are drawn by a random generator seeded with that seed, so a prompt depends only on (pools, emotion, seed):
the same start seed gives the same prompts in any order, batch size or resumed run.

Example:
    >>> gen = PromptGenerator(start_seed=0)
    >>> [job] = gen.jobs("disgust", 1)
    >>> job.seed, job.prompt[:40]
    (5, 'close-up portrait photo image with a ...')
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .. import labels as L
from ..errors import ConfigError, DataError
from ..io import atomic_path

SEED_STEP = 200
#: The three distinct emotion words of the template come from the emotion's ``words`` pool.
WORD_SLOTS = ("emotion1", "emotion2", "emotion3")


def _read_yaml(path) -> dict:
    src = path if hasattr(path, "read_text") else Path(path)
    try:
        d = yaml.safe_load(src.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the prompt pools ({e.strerror or e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the prompt pools file must be a mapping (template, shared, emotions)")
    return d


def default_pools() -> dict:
    """The pools shipped with ferlab (``ferlab/generate/prompt_pools.yaml``)."""
    return _read_yaml(resources.files("ferlab.generate").joinpath("prompt_pools.yaml"))


def merge_pools(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``: top-level keys replace, ``shared`` and each emotion merge slot by slot."""
    out = {**base, **{k: v for k, v in extra.items() if k not in ("shared", "emotions")}}
    out["shared"] = {**base.get("shared", {}), **(extra.get("shared") or {})}
    emotions = {k: dict(v) for k, v in base.get("emotions", {}).items()}
    for name, slots in (extra.get("emotions") or {}).items():
        emotions[L.canonical_name(name)] = {**emotions.get(L.canonical_name(name), {}), **(slots or {})}
    out["emotions"] = emotions
    return out


def load_pools(path: str | Path | dict | None = None) -> dict:
    """Default pools, overridden by a YAML file (or dict) when given; validated."""
    pools = default_pools()
    if path is not None:
        pools = merge_pools(pools, path if isinstance(path, dict) else _read_yaml(path))
    validate_pools(pools)
    return pools


def template_slots(template: str) -> list[str]:
    """The ``{slot}`` names of a template, in order."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def validate_pools(pools: dict) -> None:
    """Every template slot has a non-empty list of strings for every emotion; three or more words."""
    template = pools.get("template")
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("prompt pools: 'template' must be a non-empty string")
    if not isinstance(pools.get("negative_prompt", ""), str):
        raise ConfigError("prompt pools: 'negative_prompt' must be a string")
    emotions = pools.get("emotions") or {}
    if not emotions:
        raise ConfigError("prompt pools: no 'emotions' section")
    for name, section in emotions.items():
        L.canonical_name(name)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"prompt pools: emotion {name!r} must map slot names to lists of values")
        for slot in template_slots(template):
            key = "words" if slot in WORD_SLOTS else slot
            pool = (section or {}).get(key, pools.get("shared", {}).get(key))
            if not isinstance(pool, list) or not pool or not all(isinstance(v, str) and v for v in pool):
                raise ConfigError(
                    f"prompt pools: emotion {name!r} has no pool {key!r} for template slot {{{slot}}} "
                    "(a non-empty list of strings in 'shared' or in the emotion's section)"
                )
            if key == "words" and len(set(pool)) < len(WORD_SLOTS):
                raise ConfigError(f"prompt pools: emotion {name!r} needs at least 3 different 'words'")


@dataclass(frozen=True)
class PromptJob:
    """One image to generate: its class, index within the class, seed, prompts and the slot values."""

    emotion: str
    index: int
    seed: int
    prompt: str
    negative_prompt: str
    slots: dict = field(default_factory=dict, compare=False)

    @property
    def file(self) -> str:
        """Path of the image relative to the generation folder's ``images/``."""
        return f"{self.emotion}/{self.emotion}_{self.index:06d}_s{self.seed}.png"

    def to_dict(self) -> dict:
        return {"file": self.file, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> PromptJob:
        try:
            return cls(
                L.canonical_name(d["emotion"]),
                int(d["index"]),
                int(d["seed"]),
                str(d["prompt"]),
                str(d.get("negative_prompt", "")),
                dict(d.get("slots") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"prompt record {str(d)[:80]!r}: {type(e).__name__}: {e}") from None


class PromptGenerator:
    """Berindeie's (2024) template filled from per-emotion pools, reproducible from ``start_seed``.

    Args:
        pools: a YAML file or dict overriding the shipped pools (None: the shipped ones).
        start_seed: seed of each emotion's first image (plus the emotion's offset, see the module doc).
        seed_step: seed increase per image (200 in Berindeie 2024).
    """

    def __init__(
        self, pools: str | Path | dict | None = None, start_seed: int = 0, seed_step: int = SEED_STEP
    ):
        self.pools = load_pools(pools)
        self.start_seed = int(start_seed)
        self.seed_step = int(seed_step)
        if self.seed_step < len(L.CANONICAL):
            raise ConfigError(
                f"seed_step {seed_step} must be >= {len(L.CANONICAL)} to keep class seeds distinct"
            )
        self.template = " ".join(self.pools["template"].split())
        self.negative_prompt = " ".join(self.pools.get("negative_prompt", "").split())

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(L.canonical_name(e) for e in self.pools["emotions"])

    def _section(self, emotion: str) -> dict:
        for name, section in self.pools["emotions"].items():
            if L.canonical_name(name) == emotion:
                return section or {}
        raise ConfigError(
            f"no prompt pools for emotion {emotion!r}; pools exist for: {', '.join(self.emotions)}"
        )

    def pool(self, emotion: str, slot: str) -> list[str]:
        """The values slot ``slot`` (``words`` for emotion1..3) can take for ``emotion``."""
        key = "words" if slot in WORD_SLOTS else slot
        return list(self._section(L.canonical_name(emotion)).get(key, self.pools["shared"].get(key, [])))

    def seed(self, emotion: str, index: int) -> int:
        """Generation seed of image ``index`` of ``emotion``: start + offset(emotion) + step * index."""
        return self.start_seed + L.CANONICAL.index(L.canonical_name(emotion)) + self.seed_step * int(index)

    def fill(self, emotion: str, seed: int) -> tuple[str, dict]:
        """The prompt for ``emotion`` whose slots are drawn with ``seed``, and the slot values."""
        emotion = L.canonical_name(emotion)
        rng = random.Random(f"ferlab-prompt:{emotion}:{seed}")
        slots = {}
        words = rng.sample(sorted(set(self.pool(emotion, "words"))), len(WORD_SLOTS))
        for slot in template_slots(self.template):
            if slot in WORD_SLOTS:
                slots[slot] = words[WORD_SLOTS.index(slot)]
            elif slot not in slots:
                slots[slot] = rng.choice(self.pool(emotion, slot))
        return self.template.format(**slots), slots

    def job(self, emotion: str, index: int) -> PromptJob:
        emotion = L.canonical_name(emotion)
        self._section(emotion)
        seed = self.seed(emotion, index)
        prompt, slots = self.fill(emotion, seed)
        return PromptJob(emotion, int(index), seed, prompt, self.negative_prompt, slots)

    def jobs(self, emotion: str, n: int, start_index: int = 0) -> list[PromptJob]:
        """``n`` consecutive images of one emotion (indices ``start_index ..``)."""
        if n < 0:
            raise ConfigError(f"number of images {n} must be >= 0")
        return [self.job(emotion, i) for i in range(start_index, start_index + n)]

    def jobs_for_counts(self, counts: dict[str, int]) -> list[PromptJob]:
        """Jobs for several emotions, e.g. a plan's ``generate`` counts (classes needing 0 are skipped)."""
        out = []
        for emotion, n in counts.items():
            if int(n) > 0:
                out += self.jobs(emotion, int(n))
        return out


def write_jobs(jobs, path: str | Path) -> Path:
    """Write jobs as JSON lines (one prompt record per line)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for j in jobs:
            f.write(json.dumps(j.to_dict()) + "\n")
    return path


def read_jobs(path: str | Path) -> list[PromptJob]:
    """Jobs from a JSON-lines file written by :func:`write_jobs` (or ``ferlab generate prompts``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prompts file not found")
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                out.append(PromptJob.from_dict(json.loads(line)))
            except ValueError as e:
                raise DataError(f"{path}: line {i + 1} is not JSON ({e})") from None
    return out
