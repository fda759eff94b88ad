"""Benchmarks run end to end (their figures are reported in the README, never asserted)."""

from __future__ import annotations

import numpy as np


def test_bench_predict_reports_every_figure(tiny_weights):
    from ferlab.analysis.bench import bench_photos, bench_predict, format_predict_rows

    photo = bench_photos((320, 240))
    assert photo.shape == (240, 320, 3) and photo.dtype == np.uint8
    faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    row = bench_predict(
        str(tiny_weights), threads=1, batch_size=32, repeats=1, faces=faces, photo_sizes=((320, 240),)
    )
    assert row["batch"] == 32 and row["net"] == "fernet_xs"
    assert row["faces_per_s"] > 0 and row["faces_per_s_b1"] > 0 and row["photo_320x240_per_s"] > 0
    assert row["faces_in_320x240"] == 1  # the astronaut's face
    table = format_predict_rows([row])
    assert "photos/s 320x240" in table and "fernet_xs" in table


def test_bench_train_auto_batch_and_time_budget():
    from ferlab.analysis.bench import auto_batch_size, bench_train, format_rows

    assert [auto_batch_size(g) for g in (0.2, 1.0, 3.6, 10.0, 122.0)] == [64, 64, 16, 16, 8]
    row = bench_train("smallcnn_tiny", batch_size=None, threads=1, repeats=1, min_time=0.05)
    assert row["batch_size"] == 64 and row["input"] == "1x48x48"
    assert row["train_img_per_s"] > 0 and 0 < row["train_gflop_per_img"] < 0.1
    assert row["pct_of_matmul"] > 0 and row["loader_img_per_s"] > 0
    assert "smallcnn_tiny" in format_rows([row])


def test_bench_train_flops_are_three_forward_passes_for_grouped_convs():
    """torch 2.14's counter overstates grouped-conv backward; bench_train must count 3x the forward."""
    import torch

    from ferlab.analysis.bench import bench_train
    from ferlab.models import create_model
    from ferlab.models.profile import count_flops

    row = bench_train("mobilenet_v1", batch_size=2, threads=1, repeats=1, min_time=0.01, img_size=64)
    fwd = count_flops(create_model("mobilenet_v1", img_size=64), (3, 64, 64)) / 1e9  # depthwise convs
    assert abs(row["train_gflop_per_img"] - 3 * fwd) / (3 * fwd) < 0.01
    assert torch.get_num_threads() == 1


def test_detection_photos_paste_known_faces():
    from ferlab.analysis.bench import detection_photos

    faces = np.random.default_rng(1).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    photos = detection_photos(faces, n=6, size=(320, 240), face_sizes=(48, 96), per_photo=(2, 3), seed=0)
    assert len(photos) == 6
    for photo, boxes in photos:
        assert photo.shape == (240, 320, 3) and photo.dtype == np.uint8
        assert 1 <= len(boxes) <= 3
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240 and 48 <= x2 - x1 <= 96 and x2 - x1 == y2 - y1
            patch = photo[y1:y2, x1:x2]
            assert (patch[..., 0] == patch[..., 1]).all()  # a gray face pasted on a colour scene
            for b in boxes[i + 1 :]:  # no overlap
                assert x2 <= b[0] or b[2] <= x1 or y2 <= b[1] or b[3] <= y1
    again = detection_photos(faces, n=6, size=(320, 240), face_sizes=(48, 96), per_photo=(2, 3), seed=0)
    assert all((a[0] == b[0]).all() and a[1] == b[1] for a, b in zip(photos, again))


def test_match_detections_known_answers():
    from ferlab.analysis.bench import match_detections

    truth = [(0, 0, 100, 100), (200, 200, 260, 260)]
    assert match_detections(truth, [(10, 10, 100, 100)]) == (1, 0)
    assert match_detections(truth, [(10, 10, 100, 100), (5, 5, 95, 95)]) == (1, 1)  # one truth, matched once
    assert match_detections(truth, [(0, 0, 100, 100), (200, 200, 260, 260), (400, 0, 450, 50)]) == (2, 1)
    assert match_detections(truth, [(60, 60, 160, 160)]) == (0, 1)  # IoU 0.14 < 0.3
    assert match_detections([], [(0, 0, 1, 1)]) == (0, 1)


def test_bench_detect_recall_and_false_faces():
    from ferlab.analysis.bench import bench_detect, detection_photos, format_detect_rows
    from ferlab.faces.detect import FaceDetector
    from ferlab.faces.geometry import Face

    faces = np.random.default_rng(2).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    photos = detection_photos(faces, n=5, size=(320, 240), face_sizes=(48, 160), seed=1)
    truth = {id(p): b for p, b in photos}

    class Oracle(FaceDetector):  # finds every pasted face plus one false face per photo
        def _detect(self, img):
            return [Face(b) for b in truth[id(img)]] + [Face((0, 0, 30, 30))]

    class Blind(FaceDetector):
        def _detect(self, img):
            return []

    rows = bench_detect({"oracle": Oracle(min_size=1), "blind": Blind()}, photos, threads=1, repeats=1)
    assert rows[0]["recall"] == 1.0 and rows[0]["false_per_photo"] == 1.0 and rows[0]["ms"] > 0
    assert rows[1]["recall"] == 0.0 and rows[1]["false_per_photo"] == 0.0
    assert rows[0]["faces"] == sum(len(b) for _, b in photos)
    assert "| oracle | 1 |" in format_detect_rows(rows)
