"""``ferlab predict``: photos, folders, globs, videos and crops in; JSON lines, CSV and annotated pictures out.

The model is the random-init ``tiny_weights`` (plumbing, not accuracy); faces come from the Haar detector
on the public-domain astronaut photo and real FER2013 crops.
"""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ferlab.cli import main
from ferlab.errors import ConfigError, ImageReadError
from ferlab.infer.predict import (
    EXAMPLE_IMAGE,
    FaceTracker,
    PredictSummary,
    annotate,
    box_iou,
    expand_inputs,
    predict_paths,
    predict_video,
)
from ferlab.infer.recognizer import FacePrediction, Recognizer
from ferlab.labels import CANONICAL

CLASSES = CANONICAL[:7]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def recognizer(tiny_weights) -> Recognizer:
    return Recognizer(tiny_weights, precision="fp32")


@pytest.fixture
def photos(tmp_path, astronaut):
    """A folder: astronaut.png, sub/deeper/blank.png, notes.txt (ignored), broken.png (text, not an image)."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "astronaut.png")
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(root / "sub" / "deeper" / "blank.png")
    (root / "notes.txt").write_text("not a picture")
    (root / "broken.png").write_text("this is text, not a PNG")
    return root


def write_video(path, frames, fps=10.0, fourcc="mp4v"):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def run_cli(argv, capsys):
    code = main(["predict", "--quiet", *map(str, argv)])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, lines, err


# -- photos ----------------------------------------------------------------------------------------


def test_bundled_example_is_the_astronaut():
    img = np.asarray(Image.open(EXAMPLE_IMAGE))
    assert img.shape == (512, 512, 3) and EXAMPLE_IMAGE.stat().st_size < 100_000


def test_astronaut_has_exactly_one_face_with_probabilities_summing_to_one(recognizer, tmp_path, astronaut):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=90)
    (rec,) = list(predict_paths(recognizer, [path]))
    assert rec.ok and (rec.width, rec.height) == (512, 512) and rec.frame is None
    (face,) = rec.faces
    assert set(face.probs) == set(CLASSES)
    assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.label == max(face.probs, key=face.probs.get)
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200  # the face, not the helmet or the patch
    d = rec.to_dict()
    assert d["faces"][0]["label"] == face.label and len(d["faces"][0]["probs"]) == 7
    # batched classification gives what Recognizer.predict gives one image at a time
    (same,) = recognizer.predict(path)
    assert same.box == face.box and same.probs == pytest.approx(face.probs, abs=1e-5)


def test_blank_image_is_a_record_with_no_face(recognizer, tmp_path):
    blank = np.full((240, 320, 3), 200, np.uint8)
    assert recognizer.predict_batch([blank]) == [[]]
    Image.fromarray(blank).save(tmp_path / "blank.png")
    (rec,) = predict_paths(recognizer, [tmp_path / "blank.png"])
    assert rec.ok and rec.faces == []
    assert rec.to_dict() == {"source": str(tmp_path / "blank.png"), "width": 320, "height": 240, "faces": []}


def test_several_faces_are_all_reported_largest_first(tiny_weights, astronaut):
    # the exhaustive Haar settings: haar-fast adds a false face (cascade weight 1.2) on this canvas
    recognizer = Recognizer(tiny_weights, detector="haar", precision="fp32")
    canvas = np.full((512, 1024, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    small = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    canvas[96:416, 640:960] = small
    (faces,) = recognizer.predict_batch([canvas])
    assert len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] > areas[1] and faces[0].box[0] < 512 < faces[1].box[0]


def test_folders_are_recursive_and_globs_expand(photos, tmp_path):
    files = expand_inputs([photos])
    assert [p.relative_to(photos).as_posix() for p in files] == [
        "astronaut.png",
        "broken.png",
        "sub/deeper/blank.png",
    ]  # notes.txt is not an image
    assert expand_inputs([photos / "**" / "*.png"]) == files
    assert expand_inputs([photos / "sub" / "*" / "b*.png"]) == [photos / "sub" / "deeper" / "blank.png"]
    # duplicates once, in first-seen order; a pattern matching nothing stays (reported as unreadable later)
    missing = tmp_path / "nothing" / "*.jpg"
    got = expand_inputs([photos / "astronaut.png", photos, missing])
    assert got[0] == photos / "astronaut.png" and len(got) == 4 and got[-1] == missing


def test_corrupt_file_is_reported_and_the_rest_processed(recognizer, photos, capsys, tiny_weights):
    recs = list(predict_paths(recognizer, [photos], chunk=2))
    assert [r.ok for r in recs] == [True, False, True]
    assert "broken.png" in recs[1].error and "not an image" in recs[1].error
    assert recs[1].to_dict() == {"source": str(photos / "broken.png"), "error": recs[1].error}
    summary = PredictSummary()
    for r in recs:
        summary.add(r)
    assert (summary.images, summary.faces, summary.no_face, summary.unreadable) == (2, 1, 1, 1)

    code, lines, err = run_cli([photos, photos / "gone.jpg", "--model", tiny_weights], capsys)
    assert code == 0
    assert [("error" in d, len(d.get("faces", []))) for d in lines] == [
        (False, 1),
        (True, 0),
        (False, 0),
        (True, 0),
    ]
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 2 and "broken.png" in skipped[0] and "gone.jpg: no such file" in skipped[1]
    assert "2 images: 1 face, 1 without a face, 2 unreadable" in err


def test_nothing_readable_exits_2(tmp_path, capsys, tiny_weights):
    (tmp_path / "a.png").write_text("text")
    code, lines, err = run_cli([tmp_path / "a.png", "--model", tiny_weights], capsys)
    assert code == 2 and "no image or video frame could be read (1 unreadable)" in err
    assert lines == [{"source": str(tmp_path / "a.png"), "error": lines[0]["error"]}]
    code, _, err = run_cli(["--model", tiny_weights], capsys)
    assert code == 2 and "nothing to predict" in err
    code, _, err = run_cli(["--camera", "99", "--model", tiny_weights], capsys)
    assert code == 2 and "camera:99: camera could not be opened" in err


def test_jsonl_and_csv_outputs_parse_and_list_every_class(photos, tmp_path, capsys, tiny_weights):
    out, table = tmp_path / "out" / "faces.jsonl", tmp_path / "out" / "faces.csv"
    code, lines, _ = run_cli(
        [photos / "astronaut.png", photos / "sub", "--model", tiny_weights, "--output", out, "--csv", table],
        capsys,
    )
    assert code == 0 and lines == []  # --output replaces stdout
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["faces"]) for r in recs] == [1, 0]
    face = recs[0]["faces"][0]
    assert set(face) >= {"box", "label", "confidence", "probs", "score"} and len(face["box"]) == 4
    assert list(face["probs"]) == list(CLASSES) and sum(face["probs"].values()) == pytest.approx(1, abs=1e-4)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and set(CLASSES) <= set(rows[0])
    assert rows[0]["label"] == face["label"] and float(rows[0]["x1"]) == face["box"][0]
    assert sum(float(rows[0][c]) for c in CLASSES) == pytest.approx(1, abs=1e-4)
    assert rows[1]["source"].endswith("blank.png") and rows[1]["label"] == "" and rows[1]["happy"] == ""


def test_annotated_image_differs_inside_the_box_only_near_the_face(
    photos, tmp_path, astronaut, capsys, tiny_weights
):
    ann = tmp_path / "ann"
    code, lines, err = run_cli([photos, "--model", tiny_weights, "--annotate", ann], capsys)
    assert code == 0 and "annotated output in" in err
    assert sorted(p.name for p in ann.iterdir()) == ["astronaut.png", "blank.png"]
    out = np.asarray(Image.open(ann / "astronaut.png"))
    assert out.shape == astronaut.shape
    x1, y1, x2, y2 = (round(v) for v in lines[0]["faces"][0]["box"])
    diff = np.abs(out.astype(int) - astronaut.astype(int)).max(axis=2)
    box_edge = np.zeros_like(diff, bool)
    box_edge[y1 - 1 : y2 + 2, x1 - 1 : x2 + 2] = True
    box_edge[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4] = False
    assert (diff[box_edge] > 0).mean() > 0.5  # the box is drawn
    assert (diff[y1:y2, x2 + 10 : x2 + 100] > 0).mean() > 0.5  # the legend beside it
    assert (diff[300:, :150] == 0).all()  # the rest of the photo is untouched
    blank_out = np.asarray(Image.open(ann / "blank.png"))
    assert blank_out.shape == (320, 480, 3)  # small images are enlarged to stay readable


def test_annotate_scales_with_the_image_and_lists_every_class(recognizer, astronaut):
    (face,) = recognizer.predict(astronaut)
    out = annotate(astronaut, [face], tracks=[3])
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert not np.array_equal(out, astronaut) and np.array_equal(astronaut, skdata.astronaut())
    crop = np.zeros((48, 48), np.uint8)
    enlarged = annotate(crop, [FacePrediction((0, 0, 48, 48), "sad", dict.fromkeys(CLASSES, 1 / 7))])
    # the face fills the enlarged crop, so its legend goes into a column beside it instead of over the face
    assert enlarged.shape[0] == 480 and enlarged.shape[1] > 480 and enlarged.std() > 0
    assert np.array_equal(enlarged[:, :480][40:440, 40:440], np.zeros((400, 400, 3), np.uint8))
    assert annotate(crop, [], min_side=0).shape == (48, 48, 3)


# -- crops ------------------------------------------------------------------------------------------


def test_no_detect_classifies_each_48px_crop_whole(recognizer, fer2013, tmp_path, capsys, tiny_weights):
    crops = fer2013.split("test").images[:5]
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, c in enumerate(crops):
        Image.fromarray(c).save(folder / f"{i}.png")
    code, lines, _ = run_cli([folder, "--no-detect", "--model", tiny_weights, "--precision", "fp32"], capsys)
    assert code == 0 and len(lines) == 5
    expected = recognizer.predict_faces(crops)
    for d, e in zip(lines, expected):
        (face,) = d["faces"]
        assert face["box"] == [0, 0, 48, 48] and face["score"] is None
        assert face["probs"] == pytest.approx(e.probs, abs=1e-4) and face["label"] == e.label


# -- video ------------------------------------------------------------------------------------------


def test_video_gives_one_record_per_frame_with_index_and_time(recognizer, tmp_path, astronaut):
    video = write_video(tmp_path / "clip.mp4", [astronaut] * 10, fps=10)
    recs = list(predict_video(recognizer, video, chunk=4))
    assert [r.frame for r in recs] == list(range(10))
    assert [r.time for r in recs] == pytest.approx([i / 10 for i in range(10)])
    assert all(len(r.faces) == 1 and r.tracks == [0] for r in recs)
    d = recs[3].to_dict()
    assert d["frame"] == 3 and d["time"] == pytest.approx(0.3) and d["faces"][0]["track"] == 0

    strided = list(predict_paths(recognizer, [video], every=3))
    assert [(r.frame, round(r.time, 3)) for r in strided] == [(0, 0.0), (3, 0.3), (6, 0.6), (9, 0.9)]
    assert [r.frame for r in predict_video(recognizer, video, every=2, max_frames=3)] == [0, 2, 4]
    with pytest.raises(ConfigError, match="every"):
        list(predict_video(recognizer, video, every=0))


def test_unreadable_video_is_reported(recognizer, tmp_path):
    (tmp_path / "bad.avi").write_text("not a video")
    with pytest.raises(ImageReadError, match=r"bad\.avi"):
        list(predict_video(recognizer, tmp_path / "bad.avi"))
    (rec,) = predict_paths(recognizer, [tmp_path / "bad.avi"])
    assert not rec.ok and "bad.avi" in rec.error


def test_cli_video_writes_records_and_annotated_mp4(tmp_path, astronaut, capsys, tiny_weights):
    video = write_video(tmp_path / "clip.avi", [astronaut] * 8, fps=8, fourcc="MJPG")
    ann = tmp_path / "ann"
    code, lines, err = run_cli(
        [video, "--model", tiny_weights, "--every", "2", "--smooth", "0.5", "--annotate", ann], capsys
    )
    assert code == 0 and [d["frame"] for d in lines] == [0, 2, 4, 6]
    assert [d["time"] for d in lines] == pytest.approx([0, 0.25, 0.5, 0.75])
    assert "4 video frames: 4 faces" in err
    cap = cv2.VideoCapture(str(ann / "clip_annotated.mp4"))
    assert cap.isOpened() and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(4)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4


def _wobble(seq):
    """Mean absolute change of the probabilities from one frame to the next."""
    p = np.array([[f.probs[c] for c in CLASSES] for f in seq])
    return np.abs(np.diff(p, axis=0)).sum(1).mean()


def test_smoothing_makes_consecutive_probabilities_closer():
    rng = np.random.default_rng(0)
    raw = []
    for _ in range(20):
        p = rng.dirichlet(np.ones(7))
        raw.append(FacePrediction((10, 10, 60, 60), CLASSES[int(p.argmax())], dict(zip(CLASSES, p))))
    plain, smooth = FaceTracker(), FaceTracker(alpha=0.3)
    a = [plain.update([f])[0][0] for f in raw]
    b = [smooth.update([f])[0][0] for f in raw]
    assert a == raw  # no alpha: untouched
    assert _wobble(b) < 0.5 * _wobble(a)
    for f in b:
        assert sum(f.probs.values()) == pytest.approx(1) and f.label == max(f.probs, key=f.probs.get)
    assert b[1].probs["happy"] == pytest.approx(0.3 * raw[1].probs["happy"] + 0.7 * raw[0].probs["happy"])
    with pytest.raises(ConfigError, match="alpha"):
        FaceTracker(alpha=0)


def test_tracks_follow_faces_by_overlap():
    def face(x):
        return FacePrediction((x, 0, x + 50, 50), "happy", dict.fromkeys(CLASSES, 1 / 7))

    t = FaceTracker()
    assert t.update([face(0), face(200)])[1] == [0, 1]
    assert t.update([face(205), face(4)])[1] == [1, 0]  # moved a little: same tracks
    assert t.update([face(400)])[1] == [2]  # somewhere else: a new track
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0


def test_smoothing_on_a_real_video_steadies_the_probabilities(recognizer, tmp_path, astronaut):
    darker = (astronaut * 0.55).astype(np.uint8)
    video = write_video(tmp_path / "flicker.mp4", [astronaut, darker] * 5, fps=10)
    raw = list(predict_video(recognizer, video))
    smooth = list(predict_video(recognizer, video, smooth=0.3))
    assert all(len(r.faces) == 1 for r in raw + smooth)
    assert [r.tracks for r in smooth] == [[0]] * 10  # one face followed through the clip
    assert _wobble([r.faces[0] for r in smooth]) < 0.6 * _wobble([r.faces[0] for r in raw])
    assert raw[0].faces[0].probs == smooth[0].faces[0].probs  # the first frame has no history


def test_help_mentions_predict(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "predict" in capsys.readouterr().out


def test_same_face_same_probabilities_alone_and_in_a_batch():
    """A face scores the same alone and batched with faces of other photos (fp32, within 1e-4)."""
    from ferlab import Recognizer
    from ferlab.infer.recognizer import WEIGHTS_DIR
    from ferlab.io import read_image

    astro = read_image(WEIGHTS_DIR.parent / "assets" / "astronaut.jpg")
    big = np.ascontiguousarray(np.pad(astro, ((100, 100), (300, 300), (0, 0)), mode="edge"))
    small = np.ascontiguousarray(astro[::2, ::2])
    r = Recognizer("default", precision="fp32", threads=1)
    alone = [r.predict(im) for im in (astro, big, small)]
    together = r.predict_batch([astro, big, small])
    for a, b in zip(alone, together):
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b):
            assert fa.box == fb.box
            assert max(abs(fa.probs[c] - fb.probs[c]) for c in fa.probs) < 1e-4


def test_annotation_with_several_faces_keeps_every_face_visible():
    """Legends of several faces go beside (or under) the picture: no legend covers a face or another legend."""
    from ferlab.infer.predict import annotate
    from ferlab.infer.recognizer import FacePrediction
    from ferlab.labels import CANONICAL

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    boxes = [(50, 50, 150, 150), (200, 60, 300, 160), (350, 40, 450, 140), (100, 350, 220, 470)]
    probs = dict(zip(CANONICAL[:7], [0.1, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05]))
    faces = [FacePrediction(b, "happy", probs, 0.9) for b in boxes]
    out = annotate(img, faces, min_side=0)
    assert out.shape[0] == 600 and out.shape[1] > 800  # a legend column was added
    m = 8  # box outline and tag
    for x1, y1, x2, y2 in boxes:
        assert np.array_equal(out[y1 + m : y2 - m, x1 + m : x2 - m], img[y1 + m : y2 - m, x1 + m : x2 - m])
    wide = rng.integers(0, 255, (200, 1200, 3), dtype=np.uint8)  # too low for a column: legends go under it
    out2 = annotate(wide, [FacePrediction((100, 20, 200, 120), "happy", probs, 0.9)] * 2, min_side=0)
    assert out2.shape[1] == 1200 and out2.shape[0] > 200
    one = annotate(img, faces[:1], min_side=0)  # one face with room beside it: drawn in the picture
    assert one.shape == img.shape
