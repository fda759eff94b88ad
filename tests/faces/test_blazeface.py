"""BlazeFace: the network, its anchors and decoding, weighted NMS and the bundled MediaPipe weights (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from ferlab.errors import ConfigError
from ferlab.faces import create_detector
from ferlab.faces.blazeface import (
    BlazeFace,
    _same_pad,
    anchor_centres,
    decode,
    load_blazeface,
    pyramid_scales,
    weighted_nms,
)
from ferlab.faces.geometry import box_iou

ASTRONAUT_FACE = (170, 70, 270, 200)  # as in test_faces.py: forehead to chin


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def detector():
    return create_detector("blazeface")


def test_network_output_shapes_and_anchor_count():
    net = BlazeFace().eval()
    with torch.no_grad():
        s, r = net(torch.zeros(2, 3, 128, 128))
    assert s.shape == (2, 896) and r.shape == (2, 896, 16)  # MediaPipe's 896 anchors at 128x128
    with torch.no_grad():
        s, r = net(torch.zeros(1, 3, 96, 160))  # fully convolutional: any multiple of 16
    assert s.shape[1] == r.shape[1] == len(anchor_centres(96, 160)) == 12 * 20 * 2 + 6 * 10 * 6


def test_parameter_count_matches_the_tflite_graph():
    # 24*(5*5*3)+24 stem, 16 blocks of depthwise+pointwise, four 1x1 heads
    assert sum(p.numel() for p in BlazeFace().parameters()) == 101_390


def test_same_padding_matches_tensorflow_shapes():
    x = torch.zeros(1, 1, 64, 64)
    assert _same_pad(x, 3, 2).shape[-2:] == (65, 65)  # TF pads (0, 1) for stride 2
    assert _same_pad(x, 3, 1).shape[-2:] == (66, 66)
    assert _same_pad(x, 5, 2).shape[-2:] == (67, 67)  # (1, 2)


def test_anchor_centres_order_known_answer():
    a = anchor_centres(128, 128)
    np.testing.assert_array_equal(a[:4], [[4, 4], [4, 4], [12, 4], [12, 4]])  # stride 8, 2 a cell, x fastest
    np.testing.assert_array_equal(a[512:518], np.full((6, 2), 8.0))  # stride 16 starts, 6 a cell
    np.testing.assert_array_equal(a[-1], [120, 120])


def test_decode_known_answer():
    anchors = np.array([[10, 20], [50, 50]], np.float32)
    regs = np.zeros((2, 16), np.float32)
    regs[0, :4] = [2, -3, 30, 40]  # centre offset, width, height in input pixels
    regs[0, 4:6] = [-5, -6]
    scores = np.array([3.0, -3.0], np.float32)
    d = decode(scores, regs, anchors, threshold=0.5)
    assert d.shape == (1, 17)
    np.testing.assert_allclose(d[0, :4], [12 - 15, 17 - 20, 12 + 15, 17 + 20])
    np.testing.assert_allclose(d[0, 4:6], [5, 14])
    np.testing.assert_allclose(d[0, 16], 1 / (1 + np.exp(-3.0)), rtol=1e-6)


def test_weighted_nms_merges_overlaps_by_score():
    dets = np.zeros((3, 17), np.float32)
    dets[0, :4], dets[0, 16] = [0, 0, 10, 10], 0.9
    dets[1, :4], dets[1, 16] = [2, 0, 12, 10], 0.3  # IoU 0.67 with the first
    dets[2, :4], dets[2, 16] = [50, 50, 60, 60], 0.6
    out = weighted_nms(dets, 0.3)
    assert len(out) == 2
    np.testing.assert_allclose(out[0, :4], [0.5, 0, 10.5, 10], rtol=1e-6)  # (0.9*0 + 0.3*2) / 1.2
    assert out[0, 16] == pytest.approx(0.9) and out[1, 16] == pytest.approx(0.6)
    assert weighted_nms(np.zeros((0, 17), np.float32)).shape == (0, 17)


def test_pyramid_scales():
    # 640 px photo, 40 px faces at 24 input px: 0.6, 0.3 (halved while the level exceeds 128 * sqrt(2) = 181
    # px), then the whole photo in 128 px
    assert pyramid_scales(480, 640, 40, 24) == pytest.approx([0.6, 0.3, 0.2])
    assert pyramid_scales(480, 640, 40, 12) == pytest.approx([0.3, 0.2])
    assert pyramid_scales(512, 512, 30, 20) == pytest.approx([2 / 3, 0.25])  # 171 px would be < 181: dropped
    assert pyramid_scales(720, 1280, 30, 20, step=3) == pytest.approx([2 / 3, 2 / 9, 0.1])
    assert pyramid_scales(100, 100, 40, 24) == pytest.approx([1.28])


def test_bundled_weights_are_mediapipes():
    from safetensors import safe_open

    from ferlab.faces.blazeface import WEIGHTS

    net = load_blazeface()
    assert not net.training
    from importlib import resources

    with resources.as_file(resources.files("ferlab.weights") / WEIGHTS) as p, safe_open(str(p), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "ferlab-detector" and "mediapipe==0.10.21" in meta["source"]
    assert "Apache-2.0" in meta["license"]


def test_finds_the_one_astronaut_face_with_landmarks(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert box_iou(f.box, ASTRONAUT_FACE) > 0.5
    assert 0.5 <= f.score <= 1.0
    lm = f.landmarks
    assert lm["left_eye"][0] < lm["right_eye"][0]  # sides in the image
    assert max(lm["left_eye"][1], lm["right_eye"][1]) < lm["nose"][1] < lm["mouth"][1]  # eyes, nose, mouth
    x1, y1, x2, y2 = f.box
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in (lm["left_eye"], lm["right_eye"], lm["mouth"]))


def test_finds_small_and_several_faces_through_the_pyramid(astronaut, detector):
    import cv2

    face = astronaut[50:230, 150:290]  # the astronaut's head, 140x180
    canvas = np.full((720, 1280, 3), 200, np.uint8)
    boxes = []
    for (x, y), side in zip([(100, 100), (700, 400), (1000, 80)], [60, 120, 240]):
        h = round(side * 180 / 140)
        canvas[y : y + h, x : x + side] = cv2.resize(face, (side, h), interpolation=cv2.INTER_AREA)
        boxes.append((x, y, x + side, y + h))
    found = detector.detect(canvas)
    for b in boxes:  # every pasted head's face is found once
        assert sum(box_iou(f.box, b) > 0.2 for f in found) == 1
    # at most one stray box (0.68 on the collar at the hard edge of the 240 px paste, measured)
    assert len(found) <= 4
    # MediaPipe's own view (the whole photo in 128 px) misses the 60 px face
    whole = create_detector("blazeface", face_px=128, min_size=1280)
    assert len(whole.detect(canvas)) < 3


def test_finds_nothing_in_a_blank_image(detector):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert detector.detect(np.zeros((480, 640), np.uint8)) == []  # grayscale accepted


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="face_px"):
        create_detector("blazeface:face_px=4")
    with pytest.raises(ConfigError, match="step"):
        create_detector("blazeface", step=1.0)


def test_onnx_and_torch_backends_agree(astronaut):
    pytest.importorskip("onnxruntime")
    onnx, torch_ = create_detector("blazeface:backend=onnx"), create_detector("blazeface:backend=torch")
    assert (onnx.backend, torch_.backend) == ("onnx", "torch")
    a, b = onnx.detect(astronaut), torch_.detect(astronaut)
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].box, b[0].box, atol=0.05)
    assert a[0].score == pytest.approx(b[0].score, abs=1e-4)
    with pytest.raises(ConfigError, match="backend"):
        create_detector("blazeface:backend=tflite")
