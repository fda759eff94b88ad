"""Benchmarks (``ferlab bench ...``): measured throughput on this machine, never asserted by tests.

``bench_train`` reports, per model: training images/s (forward + backward + optimiser step on real-sized
random batches), the achieved GFLOP/s (training FLOPs = 3x the forward FLOPs that ``torch.utils.flop_counter``
counts on the batch: the usual convention that the backward pass costs twice the forward; counting the
backward directly is wrong in torch 2.14, whose ``convolution_backward`` formula ignores ``groups`` and
overstates a 64-channel depthwise 7x7 conv's backward 65-fold, which made ConvNeXt-style models look faster
than a matmul),
the same run's matmul GFLOP/s (the machine's practical limit) and their ratio, and the data pipeline's
images/s (gather + augment of in-memory uint8 crops) beside it. Medians of several timed repeats; the
thread count is explicit because timings on a shared 2-core machine collapse under other load.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..tables import markdown_table
from .timing import median_rate

#: what ``ferlab bench`` measures (``compare`` is :func:`ferlab.analysis.compare.bench_compare`)
BENCHMARKS = ("train", "predict", "detect", "compare", "closeups")


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matmul GFLOP/s (median of ``repeats`` rounds of ten n x n products)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)

    def ten():
        for _ in range(10):
            a @ b

    return median_rate(ten, 2 * n**3 * 10 / 1e9, repeats, min_time=0.0)


def _train_step_fn(model, x, y, precision: str, opt):
    import torch

    from ..runtime.precision import autocast_context

    def step():
        with autocast_context(precision):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def auto_batch_size(gflops: float) -> int:
    """Batch size for ``bench_train`` when none is given: 64 up to 1 GFLOP per image, 16 up to 10, else 8.

    Large 224x224 models would take minutes per batch of 64 on 2 CPU cores; images/s of a large model
    barely depends on the batch size once it is 8 or more.
    """
    return 64 if gflops <= 1 else 16 if gflops <= 10 else 8


def bench_train(
    name: str, batch_size: int | None = 64, threads: int | None = None, precision: str = "auto",
    channels_last: bool = False, steps: int = 5, repeats: int = 3, img_size: int | None = None,
    min_time: float | None = None,
) -> dict:  # fmt: skip
    """Training throughput of one model (see module docstring).

    ``batch_size=None`` picks :func:`auto_batch_size` from the model's FLOPs. With ``min_time`` each timed
    repeat runs whole steps until that many seconds have passed (at least one) instead of ``steps``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..hardware import configure_threads
    from ..models import create_model
    from ..runtime.precision import autocast_context, resolve_precision
    from ..transforms import create_transform

    configure_threads(threads)
    precision = resolve_precision(precision)
    model = create_model(name, img_size=img_size)
    cfg = model.data_config
    if batch_size is None:
        from ..models.profile import count_flops

        batch_size = auto_batch_size(count_flops(model, cfg.input_size) / 1e9)
        model.train()
    x = torch.randn(batch_size, *cfg.input_size)
    y = torch.randint(0, model.num_classes, (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    step = _train_step_fn(model, x, y, precision, opt)
    with FlopCounterMode(display=False) as fc, autocast_context(precision):
        model(x)
    flops = 3 * fc.get_total_flops()  # forward + backward (2x forward); see the module docstring
    for _ in range(1 if min_time else 2):
        step()
    rates = []
    for _ in range(repeats):
        t, k = time.perf_counter(), 0
        while (k < steps) if not min_time else (k == 0 or time.perf_counter() - t < min_time):
            step()
            k += 1
        rates.append(batch_size * k / (time.perf_counter() - t))
    ips = statistics.median(rates)
    # data pipeline: gather + augment in-memory uint8 faces of the model's input size
    tf = create_transform(cfg, is_training=True)
    h = cfg.input_size[1]
    pool = np.random.default_rng(0).integers(0, 255, (4096, h, h), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < 1.0:
        idx = np.random.default_rng(n).integers(0, len(pool), batch_size)
        tf(pool[idx], generator=g)
        n += batch_size
    loader_ips = n / (time.perf_counter() - t)
    mm = matmul_gflops()
    achieved = flops / batch_size * ips / 1e9
    return {
        "model": name, "threads": torch.get_num_threads(), "precision": precision, "channels_last": channels_last,
        "batch_size": batch_size, "input": "x".join(map(str, cfg.input_size)),
        "train_img_per_s": ips, "train_gflop_per_img": flops / batch_size / 1e9, "achieved_gflops": achieved,
        "matmul_gflops": mm, "pct_of_matmul": 100 * achieved / mm, "loader_img_per_s": loader_ips,
    }  # fmt: skip


def _num(v: float) -> str:
    """Throughput with 2-3 significant digits below 100 (0.31, 4.7), whole numbers above."""
    return f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def format_rows(rows: list[dict]) -> str:
    head = ["model", "input", "threads", "precision", "ch-last", "train img/s", "GFLOP/img (train)", "GFLOP/s",
            "matmul GFLOP/s", "% of matmul", "loader img/s"]  # fmt: skip
    cells = [[r["model"], r["input"], r["threads"], r["precision"], r["channels_last"], _num(r["train_img_per_s"]),
              f"{r['train_gflop_per_img']:.3f}", f"{r['achieved_gflops']:.1f}", f"{r['matmul_gflops']:.0f}",
              f"{r['pct_of_matmul']:.0f}%", f"{r['loader_img_per_s']:.0f}"] for r in rows]  # fmt: skip
    return markdown_table(head, cells, "llrllrrrrrr")


def bench_photos(size: tuple[int, int]) -> np.ndarray:
    """A ``(width, height)`` RGB photo with one frontal face: scikit-image's astronaut photo fitted in."""
    import cv2
    from skimage import data

    w, h = size
    img = data.astronaut()
    s = min(w / img.shape[1], h / img.shape[0])
    img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 127, np.uint8)
    y, x = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
    canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
    return canvas


def bench_predict(
    model: str = "default", threads: int | None = None, backend: str = "torch", detector: str = "blazeface",
    batch_size: int = 128, precision: str = "auto", repeats: int = 5, faces=None,
    photo_sizes=((512, 512), (640, 480), (1280, 720)),
) -> dict:  # fmt: skip
    """Inference speed of a model through :class:`ferlab.Recognizer` (``ferlab bench predict``).

    Reports faces/s for batched crops (``predict_faces``, batch ``batch_size``), faces/s one crop at a time
    (batch 1, the way ``fer`` is timed), and photos/s of the full pipeline (detection + crop +
    classification) on photos of the given sizes, with the detector's share. ``faces`` are uint8 crops
    (FER2013 PrivateTest when the caller has them; random otherwise). Medians of ``repeats`` rounds.
    """
    import torch

    from ..infer.recognizer import Recognizer

    r = Recognizer(model, detector=detector, backend=backend, batch_size=batch_size, precision=precision,
                   threads=threads)  # fmt: skip
    if faces is None:
        h, w = r.data_config.input_size[-2:]
        faces = np.random.default_rng(0).integers(0, 256, (1024, h, w), dtype=np.uint8)
    batch = faces[:batch_size]
    one = faces[:1]
    row = {
        "model": model, "net": getattr(r.model, "model_name", "?"), "backend": backend, "precision": r.precision,
        "threads": torch.get_num_threads(), "batch": len(batch),
        "faces_per_s": median_rate(lambda: r.predict_proba(batch), len(batch), repeats),
        "faces_per_s_b1": median_rate(lambda: r.predict_proba(one), 1, repeats),
        "detector": detector,
    }  # fmt: skip
    for w, h in photo_sizes:
        photo = bench_photos((w, h))
        n_faces = len(r.predict(photo))
        row[f"photo_{w}x{h}_per_s"] = median_rate(lambda p=photo: r.predict(p), 1, repeats)
        row[f"detect_{w}x{h}_ms"] = 1000 / median_rate(lambda p=photo: r.detector.detect(p), 1, repeats)
        row[f"faces_in_{w}x{h}"] = n_faces
    return row


def format_predict_rows(rows: list[dict]) -> str:
    sizes = {k[6:-6] for r in rows for k in r if k.startswith("photo_") and k.endswith("_per_s")}
    sizes = sorted(sizes, key=lambda s: tuple(int(v) for v in s.split("x")))
    head = ["model", "net", "backend", "precision", "threads", "crops/s (batch)", "crops/s (one at a time)", "detector",
            *(f"photos/s {s} (detect ms, faces)" for s in sizes)]  # fmt: skip
    cells = [[r["model"], r["net"], r["backend"], r["precision"], r["threads"], f"{r['faces_per_s']:.0f}",
              f"{r['faces_per_s_b1']:.0f}", r["detector"],
              *(f"{r[f'photo_{s}_per_s']:.1f} ({r[f'detect_{s}_ms']:.1f} ms, {r[f'faces_in_{s}']})" for s in sizes)]
             for r in rows]  # fmt: skip
    return markdown_table(head, cells, "llllrrrl" + "r" * len(sizes))


def detection_photos(
    faces: np.ndarray, n: int = 40, size: tuple[int, int] = (640, 480), face_sizes: tuple[int, int] = (48, 192),
    per_photo: tuple[int, int] = (1, 4), seed: int = 0,
) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:  # fmt: skip
    """Photos with known face boxes for detector recall: FER2013-style crops pasted on real scenes.

    Each ``(width, height)`` RGB photo is a random crop of one of scikit-image's face-free scenes (coffee,
    rocket, a cat, a chessboard, ...) with ``per_photo`` faces from ``faces`` (uint8 ``[N, h, w]`` crops)
    pasted at log-uniform sizes in ``face_sizes`` pixels, without overlap. Returns ``(photo, boxes)``
    pairs, boxes ``(x1, y1, x2, y2)`` of the pasted crops. A proxy for real photos: the faces are tight
    crops with hard edges, so absolute recall is below that on real photos; use it to compare detectors
    and settings on the same photos.
    """
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    scenes = [data.coffee(), data.rocket(), data.chelsea(), data.checkerboard(), data.coins(), data.page()]
    w, h = size
    out = []
    for _ in range(n):
        scene = scenes[rng.integers(len(scenes))]
        scene = np.repeat(scene[..., None], 3, 2) if scene.ndim == 2 else scene
        s = max(w / scene.shape[1], h / scene.shape[0]) * rng.uniform(1.0, 1.5)
        scene = cv2.resize(scene, (max(w, round(scene.shape[1] * s)), max(h, round(scene.shape[0] * s))))
        y0, x0 = rng.integers(scene.shape[0] - h + 1), rng.integers(scene.shape[1] - w + 1)
        photo = np.ascontiguousarray(scene[y0 : y0 + h, x0 : x0 + w])
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(rng.integers(per_photo[0], per_photo[1] + 1)):
            side = int(np.exp(rng.uniform(np.log(face_sizes[0]), np.log(min(face_sizes[1], h)))))
            for _try in range(20):
                x, y = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
                box = (x, y, x + side, y + side)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    face = cv2.resize(
                        faces[rng.integers(len(faces))], (side, side), interpolation=cv2.INTER_LINEAR
                    )
                    photo[y : y + side, x : x + side] = face[..., None] if face.ndim == 2 else face
                    boxes.append(box)
                    break
        out.append((photo, boxes))
    return out


def _matched(truth, found, iou: float) -> list[bool]:
    """Greedy one-to-one matching of found boxes to true boxes at ``iou``: which true boxes were found."""
    from ..faces.geometry import box_iou

    hit = [False] * len(truth)
    for box in found:
        free = [i for i, h in enumerate(hit) if not h]
        best = max(free, key=lambda i: box_iou(box, truth[i]), default=None)
        if best is not None and box_iou(box, truth[best]) >= iou:
            hit[best] = True
    return hit


def match_detections(truth, found, iou: float = 0.3) -> tuple[int, int]:
    """Greedy one-to-one matching of found boxes to true boxes at ``iou``: ``(true positives, false positives)``."""
    tp = sum(_matched(list(truth), found, iou))
    return tp, len(found) - tp


def bench_detect(detectors: dict, photos, threads: int | None = None, repeats: int = 3) -> list[dict]:
    """Speed and recall of face detectors on the same photos (``ferlab bench detect``).

    Args:
        detectors: ``{label: FaceDetector}``.
        photos: ``(photo, true_boxes)`` pairs, e.g. from :func:`detection_photos` (one size per call).
        threads: OpenCV/torch threads.
        repeats: timed passes over all photos; the median is reported.

    Returns one row per detector: ms per photo, recall, recall by true face side (< 64, 64-128, >= 128 px),
    false faces per photo.
    """
    import cv2

    from ..hardware import configure_threads

    configure_threads(threads)
    rows = []
    bins = {"recall_lt64": (0, 64), "recall_64_128": (64, 128), "recall_ge128": (128, 1 << 30)}
    for label, det in detectors.items():
        det.detect(photos[0][0])  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            found = [[f.box for f in det.detect(p)] for p, _ in photos]
            times.append((time.perf_counter() - t) / len(photos))
        n_true = sum(len(b) for _, b in photos)
        tp = fp = 0
        hit = {k: [0, 0] for k in bins}
        for (_, truth), boxes in zip(photos, found):
            matched = _matched(truth, boxes, 0.3)
            tp, fp = tp + sum(matched), fp + len(boxes) - sum(matched)
            for t, m in zip(truth, matched):
                for k, (lo, hi) in bins.items():
                    if lo <= t[2] - t[0] < hi:
                        hit[k][1] += 1
                        hit[k][0] += m
        row = {
            "detector": label,
            "threads": threads or cv2.getNumThreads(),
            "ms": 1000 * statistics.median(times),
        }
        row.update(recall=tp / max(n_true, 1), false_per_photo=fp / len(photos), faces=n_true)
        row.update({k: (v[0] / v[1] if v[1] else float("nan")) for k, v in hit.items()})
        rows.append(row)
    return rows


def format_detect_rows(rows: list[dict], size: str = "") -> str:
    head = ["detector", "threads", f"ms/photo {size}", "recall", "< 64 px", "64-128 px", ">= 128 px",
            "false faces/photo"]  # fmt: skip
    cells = [[r["detector"], r["threads"], f"{r['ms']:.1f}", f"{r['recall']:.3f}", f"{r['recall_lt64']:.3f}",
              f"{r['recall_64_128']:.3f}", f"{r['recall_ge128']:.3f}", f"{r['false_per_photo']:.2f}"] for r in rows]  # fmt: skip
    return markdown_table(head, cells, "lrrrrrrr")


def closeup_photos(
    faces: np.ndarray, n: int = 200, sides: tuple[int, int] = (200, 400), fill: tuple[float, float] = (0.7, 1.1),
    seed: int = 0,
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:  # fmt: skip
    """Close-ups with a known face box: FER2013 crops (tight faces) upscaled so the face fills ``fill`` of a
    ``sides``-pixel frame (above 1: cut by the frame's edges), at a random offset, on the crop's own edge
    colours (replicated border). Returns ``(rgb photo, true box clipped to the frame)`` pairs."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        crop = faces[rng.integers(len(faces))]
        side = int(rng.integers(sides[0], sides[1] + 1))
        face = max(8, round(side * rng.uniform(*fill)))
        big = cv2.resize(crop, (face, face), interpolation=cv2.INTER_CUBIC)
        room = side - face
        x0 = int(rng.integers(min(0, room), max(0, room) + 1))
        y0 = int(rng.integers(min(0, room), max(0, room) + 1))
        # place the face at (x0, y0) in a side x side frame, filling the rest by replicating the face's edges
        pad = [max(0, y0), max(0, side - y0 - face), max(0, x0), max(0, side - x0 - face)]
        canvas = cv2.copyMakeBorder(big, *pad, cv2.BORDER_REPLICATE)
        cy, cx = max(0, -y0), max(0, -x0)
        photo = canvas[cy : cy + side, cx : cx + side]
        photo = np.ascontiguousarray(np.repeat(photo[..., None], 3, 2)) if photo.ndim == 2 else photo
        box = (max(x0, 0), max(y0, 0), min(x0 + face, side), min(y0 + face, side))
        out.append((photo, box))
    return out


def bench_closeups(detectors: dict, photos, iou: float = 0.3) -> list[dict]:
    """Recall (a found box overlapping the true one at ``iou``) and ms per photo of each detector on close-ups."""
    from ..faces.geometry import box_iou

    rows = []
    for label, det in detectors.items():
        t = time.perf_counter()
        found = [det.detect(p) for p, _ in photos]
        ms = 1000 * (time.perf_counter() - t) / len(photos)
        hits = [any(box_iou(f.box, truth) >= iou for f in fs) for fs, (_, truth) in zip(found, photos)]
        cut = [t[0] == 0 or t[1] == 0 or t[2] == p.shape[1] or t[3] == p.shape[0] for p, t in photos]
        rows.append({
            "detector": label, "recall": float(np.mean(hits)), "ms": ms, "photos": len(photos),
            "recall_cut": float(np.mean([h for h, c in zip(hits, cut) if c])) if any(cut) else float("nan"),
            "recall_whole": float(np.mean([h for h, c in zip(hits, cut) if not c])) if not all(cut) else float("nan"),
            "none_found": int(sum(not fs for fs in found)),
        })  # fmt: skip
    return rows


def format_closeup_rows(rows: list[dict]) -> str:
    head = ["detector", "recall", "face inside the frame", "face cut by the frame", "photos with no face found",
            "ms/photo"]  # fmt: skip
    cells = [[r["detector"], f"{r['recall']:.3f}", f"{r['recall_whole']:.3f}", f"{r['recall_cut']:.3f}",
              f"{r['none_found']} of {r['photos']}", f"{r['ms']:.1f}"] for r in rows]  # fmt: skip
    return markdown_table(head, cells, "lrrrrr")
