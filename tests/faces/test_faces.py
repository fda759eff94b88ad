"""Face preprocessing: detectors, geometry, photometric normalisation and folder preparation (offline, CPU)."""

from __future__ import annotations

import importlib.util
import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from skimage.feature import local_binary_pattern

from ferlab import labels as L
from ferlab.errors import ConfigError, FerlabError
from ferlab.faces import (
    Face,
    FacePreprocessor,
    align_face,
    aligned_crop,
    alignment_matrix,
    clahe,
    create_detector,
    crop_face,
    equalize_hist,
    lbp_batch,
    lbp_image,
    prepare_folder,
    resize,
)

#: Where the astronaut's face is in ``skimage.data.astronaut()`` (checked by eye): forehead to chin.
ASTRONAUT_FACE = (170, 70, 270, 200)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module", params=["haar", "haar-fast"])
def haar(request):
    return create_detector(request.param)


def _overlap(a, b) -> float:
    """Intersection area over the area of ``a``."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / ((a[2] - a[0]) * (a[3] - a[1]))


def _jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --- detection ------------------------------------------------------------------------------------


def test_haar_finds_the_one_astronaut_face(astronaut, haar):
    faces = haar.detect(astronaut)
    assert len(faces) == 1
    assert _overlap(faces[0].box, ASTRONAUT_FACE) > 0.8
    assert faces[0].score > 0
    assert faces[0].landmarks is None


def test_haar_accepts_grayscale_and_paths(astronaut, haar, tmp_path):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert len(haar.detect(gray)) == 1
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(astronaut))
    assert len(haar(path)) == 1


@pytest.mark.parametrize("blank", [np.zeros((240, 320, 3), np.uint8), np.full((240, 320), 128, np.uint8)])
def test_haar_finds_nothing_in_a_blank_image(blank, haar):
    assert haar.detect(blank) == []


def test_detections_are_sorted_largest_first_and_filtered_by_size(astronaut, haar):
    small = resize(astronaut, 256)  # the same face at half size
    both = np.zeros((512, 1024, 3), np.uint8)
    both[:, :512] = small.repeat(2, 0).repeat(2, 1)[:512, :512]
    both[:256, 600:856] = small
    faces = haar.detect(both)
    assert len(faces) >= 2
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    big = create_detector("haar", min_size=80).detect(both)
    assert len(big) == 1 and big[0].box[2] <= 512


def test_haar_shrinks_large_images_and_maps_boxes_back(astronaut):
    large = resize(astronaut, 1536)
    face = create_detector("haar", max_side=512).detect(large)[0]
    assert _overlap(face.box, tuple(v * 3 for v in ASTRONAUT_FACE)) > 0.8


def test_face_px_detects_on_a_shrunk_copy_and_maps_boxes_back(astronaut, monkeypatch):
    full = create_detector("haar", min_size=96).detect(astronaut)
    det = create_detector("haar", min_size=96, face_px=24)
    seen = []
    real = det._cascade.detectMultiScale3

    class Spy:
        def detectMultiScale3(self, img, **kw):
            seen.append((img.shape, kw["minSize"]))
            return real(img, **kw)

    monkeypatch.setattr(det, "_cascade", Spy())
    fast = det.detect(astronaut)
    assert seen == [((128, 128), (24, 24))]  # 512 px shrunk by 24/96
    assert len(fast) == len(full) == 1
    assert _overlap(fast[0].box, full[0].box) > 0.7 and _overlap(fast[0].box, ASTRONAUT_FACE) > 0.7


def test_face_px_below_the_cascade_window_is_refused():
    with pytest.raises(FerlabError, match="face_px=16"):
        create_detector("haar", face_px=16)


def test_haar_fast_defaults_and_minimum_face(astronaut):
    det = create_detector("haar-fast")
    assert (det.min_size, det.face_px, det.scale_factor, det.min_neighbors) == (48, 32, 1.15, 1)
    assert det.score_threshold == 1.0
    tiny = resize(astronaut, 64)  # the face is about 20 px: below haar-fast's 48
    assert det.detect(tiny) == []


def test_detector_options_in_the_name():
    det = create_detector("HAAR:min_size=50, max_side=null,scale_factor=1.1")
    assert (det.min_size, det.max_side, det.scale_factor) == (50, None, 1.1)
    assert create_detector("haar-fast:min_neighbors=3", min_size=60).min_neighbors == 3
    assert create_detector("haar:min_size=50", min_size=70).min_size == 70  # keywords win
    with pytest.raises(ConfigError, match="not key=value"):
        create_detector("haar:min_size")
    with pytest.raises(ConfigError, match="bogus"):
        create_detector("haar:bogus=1")


def test_unknown_detector_lists_the_valid_names():
    with pytest.raises(ConfigError, match="haar") as err:
        create_detector("viola")
    assert "mtcnn" in str(err.value) and "mediapipe" in str(err.value)


@pytest.mark.parametrize(("name", "package"), [("mtcnn", "facenet_pytorch"), ("mediapipe", "mediapipe")])
def test_missing_optional_detector_says_how_to_install(name, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(FerlabError, match="pip install") as err:
        create_detector(name)
    assert "\n" not in str(err.value)


# --- geometry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(60, 80), (60, 80, 3)])
@pytest.mark.parametrize(("size", "expected"), [(48, (48, 48)), ((30, 100), (30, 100)), (200, (200, 200))])
def test_resize_shapes_keep_channels_and_dtype(shape, size, expected):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = resize(img, size)
    assert out.shape == expected + shape[2:]
    assert out.dtype == np.uint8


def test_resize_averages_when_shrinking():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    assert np.abs(resize(checker, 8).astype(int) - 128).max() <= 1


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 40, 40),
        (-30, -30, 20, 20),
        (480, 480, 530, 530),
        (100, 490, 160, 600),
        (-200, -200, -100, -100),
    ],
)
@pytest.mark.parametrize("pad", ["edge", "constant"])
def test_crop_face_near_borders_has_the_right_shape(astronaut, box, pad):
    out = crop_face(astronaut, box, margin=0.25, pad=pad)
    side = round(max(box[2] - box[0], box[3] - box[1]) * 1.5)
    assert out.shape == (side, side, 3)
    assert out.dtype == np.uint8


def test_crop_face_inside_the_image_is_a_plain_slice(astronaut):
    out = crop_face(astronaut, (100, 120, 200, 180), margin=0.0, square=False)
    np.testing.assert_array_equal(out, astronaut[120:180, 100:200])
    assert crop_face(astronaut, (100, 120, 200, 180), margin=0.0).shape == (100, 100, 3)


def test_crop_face_constant_pad_is_black_outside(astronaut):
    out = crop_face(astronaut, (-50, 0, 50, 100), margin=0.0, pad="constant")
    assert (out[:, :50] == 0).all()
    np.testing.assert_array_equal(out[:, 50:], astronaut[0:100, 0:50])


def test_alignment_matrix_makes_eyes_horizontal_known_answer():
    left, right = (100.0, 100.0), (200.0, 150.0)  # right eye 50 px lower: a 26.57 degree tilt
    m = alignment_matrix(left, right)
    (lx, ly), (rx, ry) = (m @ np.array([*p, 1.0]) for p in (left, right))
    half = np.hypot(100, 50) / 2
    np.testing.assert_allclose([lx, ly, rx, ry], [150 - half, 125, 150 + half, 125], atol=1e-9)


def test_align_face_levels_two_dots():
    img = np.zeros((200, 200), np.uint8)
    left, right = (60, 80), (140, 120)
    for x, y in (left, right):
        cv2.circle(img, (x, y), 4, 255, -1)
    out = align_face(img, left, right)
    assert out.shape == img.shape
    n, _, _, centroids = cv2.connectedComponentsWithStats((out > 127).astype(np.uint8))
    assert n == 3
    (x1, y1), (x2, y2) = sorted(centroids[1:].tolist())
    assert abs(y1 - y2) < 0.5 and abs(y1 - 100) < 0.5
    assert abs((x2 - x1) - np.hypot(80, 40)) < 1.0


def test_aligned_crop_matches_align_then_crop(astronaut):
    face = Face((180, 70, 270, 160), 1.0, {"left_eye": (205, 110), "right_eye": (245, 118)})
    full = align_face(astronaut, *face.eyes)
    m = alignment_matrix(*face.eyes)
    expected = crop_face(full, face.transformed(m).box)
    got = aligned_crop(astronaut, face)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 1.0


def test_face_transformed_maps_landmarks():
    face = Face((0, 0, 10, 10), 0.9, {"left_eye": (2, 3), "right_eye": (8, 3)})
    moved = face.transformed(np.array([[1.0, 0, 5], [0, 1.0, -1]]))
    assert moved.box == (5, -1, 15, 9)
    assert moved.landmarks["right_eye"] == (13, 2)
    assert face.scaled(2).box == (0, 0, 20, 20)


# --- photometric ---------------------------------------------------------------------------------


def test_lbp_image_equals_skimage_scaled():
    gray = skdata.camera()
    expected = np.rint(local_binary_pattern(gray, 8, 1, "uniform") * 255 / 9).astype(np.uint8)
    np.testing.assert_array_equal(lbp_image(gray), expected)
    exp16 = np.rint(local_binary_pattern(gray, 16, 2, "uniform") * 255 / 17).astype(np.uint8)
    np.testing.assert_array_equal(lbp_image(gray, points=16, radius=2), exp16)


def test_lbp_on_rgb_uses_gray_and_batches(astronaut):
    out = lbp_image(astronaut)
    assert out.shape == astronaut.shape[:2] and out.dtype == np.uint8
    assert out.max() <= 255 and set(np.unique(out)) <= {round(k * 255 / 9) for k in range(10)}
    batch = np.stack([resize(astronaut, 32), resize(astronaut[::-1], 32)])
    got = lbp_batch(batch)
    assert got.shape == (2, 32, 32)
    np.testing.assert_array_equal(got[1], lbp_image(batch[1]))
    with pytest.raises(ConfigError, match="uniform"):
        lbp_image(astronaut, method="var")


@pytest.mark.parametrize("fn", [equalize_hist, clahe])
@pytest.mark.parametrize("rgb", [False, True])
def test_equalisation_keeps_shape_and_raises_contrast(fn, rgb):
    low = (skdata.camera()[::4, ::4] // 4 + 100).astype(np.uint8)  # values squeezed into 100..163
    if rgb:
        low = np.repeat(low[..., None], 3, axis=2)
    out = fn(low)
    assert out.shape == low.shape and out.dtype == np.uint8
    assert out.std() > 1.5 * low.std()
    assert np.ptp(out) > np.ptp(low)


# --- pipeline ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("grayscale", "shape"), [(True, (48, 48)), (False, (48, 48, 3))])
@pytest.mark.parametrize("equalize", [None, "hist", "clahe"])
def test_preprocessor_returns_crops(astronaut, grayscale, shape, equalize):
    out = FacePreprocessor(size=48, grayscale=grayscale, equalize=equalize)(astronaut)
    assert len(out) == 1
    face, crop = out[0]
    assert crop.shape == shape and crop.dtype == np.uint8
    assert _overlap(face.box, ASTRONAUT_FACE) > 0.8


def test_preprocessor_aligns_with_landmarks(astronaut):
    class FixedDetector:
        name = "fixed"

        def detect(self, img):
            return [Face((180, 70, 270, 160), 1.0, {"left_eye": (205, 110), "right_eye": (245, 130)})]

    pre = FacePreprocessor(size=None, grayscale=False)
    pre.detector = FixedDetector()
    face, crop = pre.largest(astronaut)
    assert np.array_equal(crop, aligned_crop(astronaut, face, 0.2))
    pre.align = False
    assert np.array_equal(pre.largest(astronaut)[1], crop_face(astronaut, face.box, 0.2))


def test_preprocessor_rejects_bad_options():
    with pytest.raises(ConfigError, match="clahe"):
        FacePreprocessor(equalize="gamma")


@pytest.fixture
def raw_folder(tmp_path, astronaut):
    src = tmp_path / "raw"
    src.mkdir()
    (src / "astronaut.jpg").write_bytes(_jpeg_bytes(astronaut))
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(src / "blank.png")
    (src / "corrupt.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    )
    whole = _jpeg_bytes(astronaut)
    (src / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "notes.png").write_text("this is not an image\n")
    (src / "readme.txt").write_text("ignored: not an image extension\n")
    return src


def test_prepare_folder_skips_and_counts_bad_files(raw_folder, tmp_path):
    out = tmp_path / "faces"
    rep = prepare_folder(raw_folder, out, size=48, progress=False)
    assert sorted(p.name for p in out.rglob("*.png")) == ["astronaut.png"]
    assert np.asarray(Image.open(out / "astronaut.png")).shape == (48, 48)
    assert (rep.images, rep.crops, rep.no_face, rep.unreadable, rep.multiple_faces) == (5, 1, 1, 3, 0)
    text = rep.summary()
    assert "\n" not in text
    assert "5 images -> 1 face crops" in text and "1 with no face" in text and "3 unreadable" in text


def test_prepare_folder_keeps_class_folders(tmp_path, astronaut):
    src = tmp_path / "raw"
    for folder, name in [("Happiness", "a.jpg"), ("angry", "b.jpg"), ("train/sad", "c.jpg")]:
        (src / folder).mkdir(parents=True)
        (src / folder / name).write_bytes(_jpeg_bytes(astronaut))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(src / "angry" / "blank.png")
    out = tmp_path / "faces"
    rep = prepare_folder(src, out, size=32, progress=False)
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert got == ["angry/b.png", "happy/a.png", "train/sad/c.png"]
    assert rep.classes == L.SEVEN
    assert rep.class_counts == {"happy": 1, "angry": 1, "sad": 1}
    assert rep.no_face == 1


def test_prepare_folder_hdf5_loads_back(tmp_path, astronaut):
    h5py = pytest.importorskip("h5py")
    src = tmp_path / "raw"
    for folder in ("happy", "contempt"):
        (src / folder).mkdir(parents=True)
        (src / folder / "x.jpg").write_bytes(_jpeg_bytes(astronaut))
    (src / "happy" / "bad.jpg").write_bytes(b"not a jpeg")
    rep = prepare_folder(src, tmp_path / "faces.h5", format="hdf5", size=40, grayscale=False, progress=False)
    assert rep.output == tmp_path / "faces.h5" and rep.crops == 2 and rep.unreadable == 1
    with h5py.File(rep.output, "r") as f:
        assert f["images"].shape == (2, 40, 40, 3) and f["images"].dtype == np.uint8
        assert list(f.attrs["classes"]) == list(L.EIGHT)
        names = [L.EIGHT[i] for i in f["labels"][:]]
        paths = [p.decode() for p in f["paths"][:]]
        assert dict(zip(paths, names)) == {"contempt/x.jpg": "contempt", "happy/x.jpg": "happy"}
        assert f["boxes"].shape == (2, 4)


def test_prepare_folder_hdf5_without_classes_has_no_labels(raw_folder, tmp_path):
    h5py = pytest.importorskip("h5py")
    rep = prepare_folder(raw_folder, tmp_path / "out", format="hdf5", size=24, progress=False)
    assert rep.output == tmp_path / "out" / "faces.h5"
    with h5py.File(rep.output, "r") as f:
        assert f["images"].shape == (1, 24, 24) and "labels" not in f


@pytest.mark.parametrize(("keep", "crops", "skipped"), [("largest", 1, 0), ("all", 2, 0), ("single", 0, 1)])
def test_prepare_folder_keep_modes_with_two_faces(tmp_path, astronaut, keep, crops, skipped):
    src = tmp_path / "raw"
    src.mkdir()
    two = np.concatenate([astronaut[:300, 100:350], astronaut[:300, 350:100:-1]], axis=1)
    Image.fromarray(two).save(src / "pair.png")
    pre = FacePreprocessor(size=32, detector_options={"min_size": 60})
    rep = prepare_folder(src, tmp_path / "out", pre, keep=keep, progress=False)
    assert (rep.crops, rep.multiple_faces, rep.skips.counts["several faces"]) == (crops, 1, skipped)
    assert len(list((tmp_path / "out").glob("*.png"))) == crops
    assert "several faces" in rep.summary()


def test_prepare_folder_errors_are_clear(tmp_path):
    with pytest.raises(FerlabError, match="not a folder"):
        prepare_folder(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerlabError, match="no image files"):
        prepare_folder(tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="largest"):
        prepare_folder(tmp_path / "empty", tmp_path / "out", keep="first", progress=False)
