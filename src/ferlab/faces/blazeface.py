"""BlazeFace (Bazarevsky et al. 2019) in PyTorch, with MediaPipe's short-range face detection weights.

The network is MediaPipe's ``face_detection_short_range.tflite`` rebuilt layer for layer: a 5x5 stride-2 stem
and 16 "BlazeBlocks" (3x3 depthwise + 1x1 pointwise convolution, with a max-pooled, zero-channel-padded
shortcut), two SSD heads on the stride-8 (88 channels, 2 anchors a cell) and stride-16 (96 channels,
6 anchors a cell) maps, each anchor predicting a face score and 16 numbers: box centre, width and height and
six key points (eyes, nose, mouth, ears), in pixels relative to the anchor centre. ~104k parameters.

The weights (``ferlab/weights/blazeface_short_range.safetensors``, Apache-2.0, (c) Google) were converted once
from the model bundled in the ``mediapipe==0.10.21`` wheel by ``tools/convert_blazeface.py``, which also
checks the output against TFLite's reference interpreter when one is installed; ferlab needs neither mediapipe
nor TFLite to run it.

Deviations from MediaPipe's face detection graph, and why:

* MediaPipe letterboxes the whole image into one 128x128 input, so faces below about a fifth of the image
  side are missed (the model was trained for faces within 2 m of a phone camera). All layers are
  convolutions, so :class:`BlazeFaceDetector` also runs the network on an image pyramid at full
  resolution: level ``k`` shrinks the photo so that ``min_size`` pixels become ``face_px * 2**k`` input
  pixels, the anchors are laid over the whole level, and detections of every level are merged by
  MediaPipe's weighted non-maximum suppression. ``ferlab bench detect`` measures what this finds.
* TensorFlow's "SAME" padding of stride-2 convolutions pads one pixel more at the bottom/right than at the
  top/left; it is reproduced with explicit asymmetric padding, so the outputs match the TFLite model.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FerlabError
from .geometry import box_iou_many

WEIGHTS = "blazeface_short_range.safetensors"
# (in, out, stride) of the 16 BlazeBlocks of face_detection_short_range.tflite
BLOCKS = (
    (24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1), (56, 64, 1),
    (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1), (96, 96, 1), (96, 96, 1),
)  # fmt: skip


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's 'SAME' padding for even input sizes: total ``kernel - stride``, the extra pixel at the end."""
    total = max(kernel - stride, 0)
    lo = total // 2
    return F.pad(x, (lo, total - lo, lo, total - lo))


class BlazeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride, self.pad_channels = stride, cout - cin
        self.dw = nn.Conv2d(cin, cin, 3, stride, padding=0, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pw(self.dw(_same_pad(x, 3, self.stride)))
        if self.stride > 1:
            x = F.max_pool2d(x, self.stride, self.stride)
        if self.pad_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))
        return F.relu(h + x)


class BlazeFace(nn.Module):
    """The short-range BlazeFace network: ``[N, 3, H, W]`` RGB in [-1, 1] (H, W multiples of 16) ->
    ``(scores [N, A], regressors [N, A, 16])`` with ``A = H*W/128 + H*W*6/256`` anchors (896 at 128x128),
    ordered stride-8 map first, then row, column and anchor. Scores are logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 5, 2, padding=0)
        self.blocks = nn.Sequential(*(BlazeBlock(i, o, s) for i, o, s in BLOCKS))
        # heads in the order of the TFLite graph (the converter relies on it)
        self.cls8 = nn.Conv2d(88, 2, 1)
        self.cls16 = nn.Conv2d(96, 6, 1)
        self.reg8 = nn.Conv2d(88, 32, 1)
        self.reg16 = nn.Conv2d(96, 96, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.stem(_same_pad(x, 5, 2)))
        x8 = self.blocks[:11](x)
        x16 = self.blocks[11:](x8)
        n = x.shape[0]

        def flat(t: torch.Tensor, k: int) -> torch.Tensor:  # [N, C, H, W] -> [N, H*W*C/k, k]
            return t.permute(0, 2, 3, 1).reshape(n, -1, k)

        scores = torch.cat([flat(self.cls8(x8), 1), flat(self.cls16(x16), 1)], 1).squeeze(-1)
        regs = torch.cat([flat(self.reg8(x8), 16), flat(self.reg16(x16), 16)], 1)
        return scores, regs


@lru_cache(maxsize=32)
def anchor_centres(height: int, width: int) -> np.ndarray:
    """``[A, 2]`` anchor centres (x, y) in input pixels for an ``height x width`` input, in the network's order.

    MediaPipe's SSD anchors for this model (strides 8, 16, 16, 16; fixed anchor size; offset 0.5): layers
    sharing a stride are merged, giving 2 anchors a cell at stride 8 and 6 at stride 16.
    """
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        gh, gw = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid((np.arange(gh) + 0.5) * stride, (np.arange(gw) + 0.5) * stride, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(scores: np.ndarray, regs: np.ndarray, anchors: np.ndarray, threshold: float) -> np.ndarray:
    """Detections ``[K, 17]`` (x1, y1, x2, y2, six (x, y) key points, score) in input pixels above ``threshold``.

    MediaPipe's TensorsToDetections for this model: sigmoid of the clipped (+-100) logit, box centre and key
    points offset from the anchor centre, width/height absolute (all in input pixels, scale 128 on 128).
    """
    prob = (1.0 / (1.0 + np.exp(-np.clip(scores.astype(np.float64), -100.0, 100.0)))).astype(np.float32)
    keep = np.flatnonzero(prob >= threshold)
    r, a = regs[keep], anchors[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    w, h = r[:, 2], r[:, 3]
    kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return np.concatenate([boxes, kps.reshape(-1, 12), prob[keep, None]], 1)


def weighted_nms(dets: np.ndarray, iou_threshold: float = 0.3) -> np.ndarray:
    """MediaPipe's WEIGHTED non-maximum suppression: the best remaining detection absorbs every detection
    overlapping it by more than ``iou_threshold``; its coordinates become their score-weighted mean, its score stays."""
    order = np.argsort(-dets[:, -1], kind="stable")
    dets = dets[order]
    out = []
    while len(dets):
        overlap = box_iou_many(dets[0, :4], dets[:, :4]) > iou_threshold
        overlap[0] = True
        group = dets[overlap]
        w = group[:, -1:]
        merged = np.concatenate([(group[:, :-1] * w).sum(0) / w.sum(), dets[:1, -1]])
        out.append(merged)
        dets = dets[~overlap]
    return np.stack(out) if out else np.zeros((0, 17), np.float32)


def load_blazeface(path=None) -> BlazeFace:
    """The network with the bundled MediaPipe weights (or those at ``path``), in eval mode."""
    from safetensors.torch import load_file

    net = BlazeFace()
    if path is None:
        with resources.as_file(resources.files("ferlab.weights") / WEIGHTS) as p:
            if not p.is_file():
                raise FerlabError(f"BlazeFace weights {p} are missing from the package (reinstall ferlab)")
            sd = load_file(str(p))
    else:
        sd = load_file(str(path))
    net.load_state_dict(sd)
    return net.eval().to(memory_format=torch.channels_last)  # ~1.6x faster on CPU than NCHW


def _to_input(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` (w, h), scale to [-1, 1] and pad with zeros at the right/bottom to
    multiples of 16: ``[3, H16, W16]`` float32."""
    w, h = size
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR)
    H, W = -(-h // 16) * 16, -(-w // 16) * 16
    out = np.zeros((3, H, W), np.float32)
    np.multiply(small.transpose(2, 0, 1), np.float32(1 / 127.5), out=out[:, :h, :w])
    out[:, :h, :w] -= 1.0
    return out


def pyramid_scales(
    height: int, width: int, min_size: float, face_px: float, step: float = 2.0
) -> list[float]:
    """Input pixels per photo pixel of each pyramid level, finest first: ``face_px / min_size`` divided by
    ``step**k`` while the level's longer side exceeds ``128 * sqrt(step)``, then the whole photo in one
    128-pixel input (MediaPipe's view, for faces that fill the photo; it replaces a last level that would be
    less than ``sqrt(step)`` larger)."""
    if step <= 1.0:
        raise ValueError(f"pyramid step {step} must be above 1")
    side = max(height, width)
    scales, s = [], face_px / min_size
    while s * side > 128 * math.sqrt(step):
        scales.append(s)
        s /= step
    return [*scales, 128.0 / side]


class OnnxBlazeFace:
    """The network exported to ONNX (in memory, dynamic height and width) in an ONNX Runtime session; called
    like :class:`BlazeFace` on a float32 ``[1, 3, H, W]`` array. About 3x faster than PyTorch on this small
    depthwise network on a CPU. One session per thread count (taken from ``torch.get_num_threads()``)."""

    def __init__(self, net: BlazeFace) -> None:
        import io
        import warnings

        import onnxruntime  # noqa: F401  (fail here, not at the first photo)

        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                net.eval(), (torch.zeros(1, 3, 128, 128),), buf, dynamo=False, opset_version=17,
                input_names=["input"], output_names=["scores", "regressors"],
                dynamic_axes={"input": {2: "height", 3: "width"}},
            )  # fmt: skip
        self.model_bytes = buf.getvalue()
        self._sessions: dict[int, object] = {}

    def session(self, threads: int):
        if threads not in self._sessions:
            import onnxruntime as ort

            from ..hardware import ort_session_options

            # idle workers must not spin: the classifier (PyTorch) runs right after on the same cores
            so = ort_session_options(threads)
            self._sessions[threads] = ort.InferenceSession(
                self.model_bytes, so, providers=["CPUExecutionProvider"]
            )
        return self._sessions[threads]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, regs = self.session(torch.get_num_threads()).run(None, {"input": x})
        return scores, regs


def detect_pyramid(
    net, rgb: np.ndarray, scales, threshold: float = 0.5, iou_threshold: float = 0.3
) -> np.ndarray:
    """Weighted-NMS-merged detections ``[K, 17]`` (box, key points, score; photo pixels) of ``net`` (a
    :class:`BlazeFace` or :class:`OnnxBlazeFace`) run on an RGB uint8 photo resized by each of ``scales``."""
    h, w = rgb.shape[:2]
    found = []
    for s in scales:
        x = _to_input(rgb, (max(round(w * s), 1), max(round(h * s), 1)))[None]
        if isinstance(net, OnnxBlazeFace):
            scores, regs = net(x)
        else:
            with torch.inference_mode():
                t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
                scores, regs = (o.float().numpy() for o in net(t))
        d = decode(scores[0], regs[0], anchor_centres(*x.shape[2:]), threshold)
        d[:, :16] /= np.float32(s)
        found.append(d)
    return weighted_nms(np.concatenate(found), iou_threshold)
