"""Corruptions (determinism, exact occluded fraction, identities, JPEG fidelity) and ``ferlab robustness``."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest

from ferlab.analysis.corruptions import CORRUPTIONS, corrupt, region_mask, rotate
from ferlab.cli import main
from ferlab.errors import ConfigError

OCCLUSIONS = ("occlusion_random", "occlusion_eyes", "occlusion_mouth")


@pytest.fixture(scope="module")
def faces(fer2013):
    return fer2013.split("test").images[:32]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_deterministic_under_a_seed(name, faces):
    c = CORRUPTIONS[name]
    sev = [s for s in c.severities if s != c.identity][-1]
    a = corrupt(faces, name, sev, seed=3)
    corrupt(faces[:5], "occlusion_random", 25, seed=3)  # other calls in between change nothing
    b = corrupt(faces, name, sev, seed=3)
    assert a.dtype == np.uint8 and a.shape == faces.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, faces)
    rgb = np.repeat(faces[:4, ..., None], 3, -1)
    out = corrupt(rgb, name, sev, seed=3)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if name in ("occlusion_random", "motion_blur"):  # the random ones: another seed, other images
        assert not np.array_equal(corrupt(faces, name, sev, seed=4), a)


@pytest.mark.parametrize("name", OCCLUSIONS)
@pytest.mark.parametrize("percent", [10, 25, 50])
@pytest.mark.parametrize("side", [48, 100])
def test_occluded_fraction_matches_request(name, percent, side):
    imgs = np.full((6, side, side), 200, np.uint8)
    out = corrupt(imgs, name, percent, seed=0)
    frac = (out == 0).reshape(len(out), -1).mean(1)
    assert np.all(np.abs(frac - percent / 100) <= 0.01), frac
    rgb = np.full((2, side, side, 3), 200, np.uint8)
    out = corrupt(rgb, name, percent, seed=0)
    assert np.all(np.abs((out == 0).all(-1).reshape(2, -1).mean(1) - percent / 100) <= 0.01)


def test_region_masks_sit_on_the_eyes_and_the_mouth():
    eyes = region_mask(48, 48, "eyes", 0.10)
    mouth = region_mask(48, 48, "mouth", 0.10)
    ye = np.nonzero(eyes)[0].mean() / 48
    ym = np.nonzero(mouth)[0].mean() / 48
    assert 0.3 < ye < 0.45 and 0.7 < ym < 0.85
    assert not (eyes & mouth).any()


@pytest.mark.parametrize("name", ["rotation", "brightness", "contrast"])
def test_zero_severity_is_the_identity(name, faces):
    np.testing.assert_array_equal(corrupt(faces, name, 0), faces)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(corrupt(rgb, name, 0), rgb)


def test_rotation_direction_and_brightness_scale(faces):
    np.testing.assert_array_equal(rotate(faces[:2], 90), np.rot90(faces[:2], 1, axes=(1, 2)))
    half = corrupt(faces, "brightness", -50)
    np.testing.assert_allclose(half.astype(float), np.rint(faces * 0.5), atol=1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_jpeg_quality_lowers_fidelity_monotonically(faces):
    grid = CORRUPTIONS["jpeg"].severities
    assert list(grid) == sorted(grid, reverse=True)  # the grid runs from mild to severe
    psnr = [_psnr(corrupt(faces, "jpeg", q), faces) for q in grid]
    assert all(a > b for a, b in itertools.pairwise(psnr)), psnr
    blur = [_psnr(corrupt(faces, "gaussian_blur", s), faces) for s in CORRUPTIONS["gaussian_blur"].severities]
    assert all(a > b for a, b in itertools.pairwise(blur)), blur


def test_cli_robustness_end_to_end(tiny_weights, tmp_path, fer2013):
    out = tmp_path / "rob"
    args = ["robustness", "--checkpoint", str(tiny_weights), str(tiny_weights), "--dataset", "fer2013",
            "--split", "test", "--limit", "12", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    for f in (
        "robustness.md",
        "robustness.csv",
        "robustness_buckets.csv",
        "robustness.json",
        "robustness.png",
    ):
        assert (out / f).is_file(), f
    res = json.loads((out / "robustness.json").read_text())
    assert res["n"] == 12 and res["checkpoints"] == ["tiny", "tiny#2"]
    n_points = sum(len(c.severities) for c in CORRUPTIONS.values())
    with open(out / "robustness.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (1 + n_points)
    # the same corrupted images for both checkpoints: identical weights give identical accuracies
    by = {}
    for r in rows:
        by.setdefault((r["corruption"], r["severity"]), set()).add(r["accuracy"])
    assert all(len(v) == 1 for v in by.values())
    buckets = {(b["corruption"], b["bucket"]) for b in res["buckets"]}
    for need in [("rotation", "within ±30°"), ("rotation", "beyond ±30°"), ("brightness", "within ±30%"),
                 ("brightness", "beyond ±50%"), ("contrast", "beyond ±50%"), ("jpeg", "mean")]:  # fmt: skip
        assert need in buckets
    md = (out / "robustness.md").read_text()
    assert "## Buckets" in md and "| rotation | beyond ±30° |" in md
    # a second run with the same seed reproduces the table exactly
    out2 = tmp_path / "rob2"
    assert main([*args[:-1], str(out2), "--corruptions", "rotation", "occlusion_random"]) == 0
    with open(out2 / "robustness.csv") as f:
        rows2 = list(csv.DictReader(f))
    first = {(r["checkpoint"], r["corruption"], r["severity"]): r["accuracy"] for r in rows}
    assert rows2 and all(
        first[(r["checkpoint"], r["corruption"], r["severity"])] == r["accuracy"] for r in rows2
    )


def test_cli_robustness_unknown_corruption(tiny_weights, tmp_path, capsys, fer2013):
    rc = main(["robustness", "--checkpoint", str(tiny_weights), "--limit", "4", "--corruptions", "snow",
               "--out", str(tmp_path)])  # fmt: skip
    assert rc == 2
    assert "unknown corruption 'snow'" in capsys.readouterr().err


def test_cli_robustness_merge_equals_one_run(tiny_weights, tmp_path, fer2013):
    common = ["--dataset", "fer2013", "--split", "test", "--limit", "10", "--corruptions", "rotation", "jpeg"]
    assert main(["robustness", "--checkpoint", str(tiny_weights), str(tiny_weights), *common,
                 "--out", str(tmp_path / "both")]) == 0  # fmt: skip
    assert main(["robustness", "--checkpoint", str(tiny_weights), *common, "--out", str(tmp_path / "a")]) == 0
    # a copy under another name: the label must differ to be merged
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_weights.read_bytes())
    assert main(["robustness", "--checkpoint", str(other), *common, "--out", str(tmp_path / "b")]) == 0
    assert main(["robustness", "--merge", str(tmp_path / "a/robustness.json"), str(tmp_path / "b/robustness.json"),
                 "--out", str(tmp_path / "m")]) == 0  # fmt: skip
    merged = json.loads((tmp_path / "m/robustness.json").read_text())
    both = json.loads((tmp_path / "both/robustness.json").read_text())
    assert merged["checkpoints"] == ["tiny", "other"]
    assert [r["accuracy"] for r in merged["rows"]] == [r["accuracy"] for r in both["rows"]]
    assert (tmp_path / "m/robustness.png").is_file() and "| other |" in (
        tmp_path / "m/robustness.md"
    ).read_text()


def test_merge_robustness_refuses_different_images_or_twice_the_same_model():
    from ferlab.analysis.robustness import merge_robustness

    a = {"seed": 0, "n": 10, "image_shape": [48, 48], "precision": "fp32", "dataset": "fer2013", "split": "test",
         "limit": 10, "checkpoints": ["x"], "clean": {"x": {}}, "rows": [], "buckets": [],
         "corruptions": {"jpeg": {"severities": [90, 50]}}}  # fmt: skip
    with pytest.raises(ConfigError, match="seed=1"):
        merge_robustness([a, {**a, "seed": 1, "checkpoints": ["y"], "clean": {"y": {}}}])
    with pytest.raises(ConfigError, match="more than one"):
        merge_robustness([a, a])
    with pytest.raises(ConfigError, match="jpeg severities"):
        merge_robustness(
            [
                a,
                {
                    **a,
                    "checkpoints": ["y"],
                    "clean": {"y": {}},
                    "corruptions": {"jpeg": {"severities": [90]}},
                },
            ]
        )
