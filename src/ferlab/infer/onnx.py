"""Export a model to ONNX and run it with ONNX Runtime, with the same preprocessing as PyTorch.

Example:
    >>> from ferlab.infer.onnx import export_onnx, OnnxModel, check_parity
    >>> path = export_onnx(model, "fernet.onnx")            # dynamic batch, opset 17
    >>> m = OnnxModel.from_file(path)                        # classes and data config come from the file
    >>> probs = m.predict_probs(crops)                       # uint8 [N,H,W(,3)] -> float32 [N,C]
    >>> check_parity(model, path, crops)                     # max |p_onnx - p_torch|, ~1e-7

The graph maps the *normalised* batch ``[N,C,H,W]`` (input ``"input"``) to logits (output ``"logits"``);
crops go through :func:`ferlab.create_transform` and :func:`ferlab.runtime.evaluate.tta_views` in PyTorch
first, exactly as :func:`ferlab.runtime.evaluate.predict_probs` does, so the two backends differ only by
float rounding. An exported file is self-describing: its ``metadata_props`` hold the class names, the
data config (input size, colour, mean/std, LBP), the model name and kwargs as JSON.

The exporter is PyTorch's TorchScript-based one (``dynamo=False``): it needs no extra package and covers
every model of the zoo. Needs the ``onnx`` extra (``pip install ferlab[onnx]``).

INT8: :func:`quantize_int8` runs ONNX Runtime's static quantization (``quantize_static``: QDQ format,
signed per-channel weights in a 7-bit range (exact on CPUs without VNNI too), unsigned 8-bit activations calibrated with min/max on real face crops,
FER2013 training faces by default) after ONNX Runtime's pre-processing (shape inference and graph
optimisation). The result keeps ferlab's metadata plus ``quantization`` (method, calibration crops) and
``source_sha256`` (the weights file it came from, for the shipped ``*.int8.onnx`` files).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FerlabError
from ..io import write_atomic
from ..models.spec import ONNX_FORMAT, ModelSpec

FORMAT = ONNX_FORMAT
#: ``ferlab export --format`` values, and the ``--quantize`` modes (:func:`quantize_int8`)
EXPORT_FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
INPUT, OUTPUT = "input", "logits"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"ONNX export needs {module!r}: pip install 'ferlab[onnx]'") from None


def _model_bytes(model, opset: int, dynamic_batch: bool) -> bytes:
    """The model's ONNX graph, serialised, with ferlab's metadata properties added."""
    import torch

    _require("onnx")
    import onnx

    if not hasattr(model, "data_config") or not hasattr(model, "classes"):
        raise ConfigError(f"{type(model).__name__} is not a ferlab model (needs .data_config and .classes)")
    model = model.eval()
    param = next(model.parameters(), None)
    x = torch.zeros(2 if dynamic_batch else 1, *model.data_config.input_size)
    if param is not None:
        x = x.to(param.device)
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter's deprecation notice and its tracer warnings (shape-dependent Python
        # branches: fixed for a given input size, which is fixed per model) are not the user's concern
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                opset_version=int(opset),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        except Exception as e:  # noqa: BLE001 - any exporter failure is the same user-facing error
            name = getattr(model, "model_name", type(model).__name__)
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot export {name} to ONNX opset {opset}: {msg}") from None
    proto = onnx.load_from_string(buf.getvalue())
    from ..models import spec_of

    meta = {"format": FORMAT, **spec_of(model).to_meta(), "dynamic_batch": json.dumps(bool(dynamic_batch))}
    from .._version import __version__

    meta["ferlab_version"] = __version__
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "ferlab"
    return proto.SerializeToString()


def calibration_faces(n: int = 512, data_dir=None, seed: int = 0) -> np.ndarray:
    """``n`` FER2013 *training* crops (seeded random pick) for INT8 calibration; test faces are never used."""
    from ..data import load_dataset

    train = load_dataset("fer2013", data_dir).split("train")
    idx = np.sort(np.random.default_rng(seed).choice(len(train), size=min(n, len(train)), replace=False))
    return np.ascontiguousarray(train.images[idx])


def quantize_int8(
    model,
    calib_crops,
    opset: int = 17,
    batch_size: int = 64,
    extra_meta: dict | None = None,
    reduce_range: bool = True,
) -> bytes:
    """A ferlab model (or an fp32 ferlab ONNX graph as bytes) as a statically quantized INT8 ONNX graph.

    Args:
        model: a ferlab model, a name/path accepted by :func:`ferlab.runtime.weights.load_reference`, or bytes of an
            fp32 ONNX file written by :func:`export_onnx`.
        calib_crops: uint8 face crops ``[N,H,W(,3)]`` that calibrate the activation ranges (a few hundred;
            :func:`calibration_faces` gives FER2013 training faces). They go through the model's eval
            transform, exactly as at inference.
        reduce_range: 7-bit weights (ONNX Runtime's ``reduce_range``). CPUs without VNNI (AVX2-only ones,
            e.g. AMD EPYC Zen 1-3) multiply u8 x s8 pairs with ``vpmaddubsw``, whose 16-bit sums saturate with
            full 8-bit weights: measured on an AMD EPYC (AVX2), full-range weights cost `fast` 5.8 and `default`
            1.8 points on a 500-face PrivateTest sample, while VNNI CPUs were exact. 7-bit weights cannot
            saturate, so one file is right on every CPU; set False only for VNNI-only deployments.
    Returns:
        The quantized model, serialised, with ferlab's metadata and a ``quantization`` property.
    """
    import tempfile

    _require("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..transforms import create_transform

    if isinstance(model, (bytes, bytearray)):
        fp32 = bytes(model)
        meta = OnnxModel(fp32, threads=1).metadata
    else:
        from ..runtime.weights import load_reference

        m = load_reference(model)
        fp32 = _model_bytes(m, opset, True)
        meta = {"data_config": m.data_config.to_dict()}
    from ..models import DataConfig

    crops = np.asarray(calib_crops)
    if crops.dtype != np.uint8 or len(crops) == 0:
        raise ConfigError(
            f"INT8 calibration needs a non-empty uint8 batch of crops, got {crops.dtype} {crops.shape}"
        )
    tf = create_transform(DataConfig.from_dict(meta["data_config"]), is_training=False)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(range(0, len(crops), batch_size))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {INPUT: tf(crops[i : i + batch_size]).numpy()}

    with tempfile.TemporaryDirectory(prefix="ferlab-int8-") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
            )  # fmt: skip
        q = out.read_bytes()
    # pre-processing and quantization keep the graph but not always the metadata: write it back
    props = _metadata_of(fp32)
    scheme = f"int8 static QDQ, per-channel s8 weights ({7 if reduce_range else 8}-bit range), u8 activations"
    props["quantization"] = json.dumps({"scheme": scheme, "reduce_range": bool(reduce_range),
                                        "calibration": "minmax", "calibration_crops": len(crops)})  # fmt: skip
    for k, v in (extra_meta or {}).items():
        props[k] = json.dumps(v)
    import onnx

    proto = onnx.load_from_string(q)
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "ferlab"
    return proto.SerializeToString()


def _metadata_of(model_bytes: bytes) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}


def export_onnx(model, path: str | Path, opset: int = 17, dynamic_batch: bool = True) -> Path:
    """Write ``model`` (with ``.classes`` and ``.data_config``) as an ONNX file, atomically.

    Args:
        model: a ferlab model or a path/shipped name accepted by :func:`ferlab.runtime.weights.load_reference`.
        path: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset version.
        dynamic_batch: a free batch dimension; else the graph takes exactly one image.

    Returns:
        The path written.
    """
    from ..runtime.weights import load_reference

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the .onnx file to write")
    return write_atomic(_model_bytes(load_reference(model), opset, dynamic_batch), path)


def read_metadata(path: str | Path) -> dict:
    """The ferlab metadata of an exported file (classes and data config decoded from JSON)."""
    return OnnxModel.from_file(path).metadata


def _threads(threads: int | None) -> int:
    import torch

    from ..hardware import check_threads

    # follow torch's thread setting (configure_threads / --threads) instead of every core
    return check_threads(threads) or torch.get_num_threads()


#: a batch of at least this many faces per thread is split across threads (see :class:`OnnxModel`)
SPLIT_MIN_PER_THREAD = 16


class OnnxModel:
    """An exported model in an ONNX Runtime session (CPU), used like the PyTorch model it came from.

    With ``threads`` > 1, a batch of at least ``threads x SPLIT_MIN_PER_THREAD`` faces is cut into ``threads``
    parts that run at once, each on one thread of a second, single-threaded session (``Run`` is thread-safe and
    releases the GIL); smaller batches, and one face at a time, use the session's own intra-op threads. Small
    networks parallelise poorly inside one run: on a 2-core AMD EPYC (Zen 4; AVX-512 VNNI, fast bf16), ``fast`` INT8 classified 7,914
    faces/s with 2 intra-op threads against 9,389 split (4,713 on one thread), i.e. 4,443 vs 4,763 faces per
    CPU-second: the split keeps the work per face of one thread. Results do not depend on the split.

    Attributes:
        classes: class names, in output order.
        data_config: the :class:`ferlab.models.DataConfig` the crops are prepared with.
        model_name: the zoo name of the exported architecture.
        metadata: every ferlab metadata property (JSON values decoded).
    """

    def __init__(self, model_bytes_or_path, threads: int | None = None, source: str = "<memory>") -> None:
        _require("onnxruntime")
        self.threads = _threads(threads)
        self._bytes_or_path = model_bytes_or_path
        self._split_session = self._pool = None  # made on the first batch large enough to split
        try:
            self.session = self._open(self.threads)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for any bad file
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{source}: not a loadable ONNX model ({msg})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get("format") != FORMAT:
            raise ConfigError(f"{source}: ONNX file without ferlab metadata (classes, data config)")
        plain = ("format", "model_name", "ferlab_version")
        self.metadata = {k: (v if k in plain else json.loads(v)) for k, v in props.items()}
        try:
            self.spec = ModelSpec.from_meta({"model_name": "onnx", **props})
        except (KeyError, ValueError, TypeError, ConfigError) as e:
            raise ConfigError(f"{source}: damaged ferlab metadata ({type(e).__name__}: {e})") from None
        self.classes = self.spec.classes
        self.data_config = self.spec.data_config
        self.model_name = self.spec.architecture
        self.num_classes = len(self.classes)
        self.source = source
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        self._fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @classmethod
    def from_model(
        cls, model, opset: int = 17, threads: int | None = None, quantize: str | None = None, calib_crops=None
    ) -> OnnxModel:
        """Export ``model`` in memory (nothing is written to disk) and open it.

        ``quantize='int8'`` quantizes it first, calibrated on ``calib_crops`` (default: 512 FER2013 training
        faces from ``$FERLAB_DATA``).
        """
        name = getattr(model, "model_name", type(model).__name__)
        if quantize is None:
            return cls(_model_bytes(model, opset, True), threads, source=f"<{name} exported in memory>")
        if quantize != "int8":
            raise ConfigError(f"quantize={quantize!r}; valid: int8")
        crops = calibration_faces() if calib_crops is None else calib_crops
        return cls(
            quantize_int8(model, crops, opset), threads, source=f"<{name} quantized to int8 in memory>"
        )

    @property
    def is_int8(self) -> bool:
        """True for a graph written by :func:`quantize_int8`."""
        return "quantization" in self.metadata

    @property
    def precision(self) -> str:
        """``'int8'`` or ``'fp32'``: what this graph computes in."""
        return "int8" if self.is_int8 else "fp32"

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """Open an ``.onnx`` file written by :func:`export_onnx`."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"ONNX file {path} not found" if not path.is_dir() else f"{path} is a folder")
        return cls(str(path), threads, source=str(path))

    def _open(self, threads: int):
        """A CPU session of this model with ``threads`` intra-op threads."""
        import onnxruntime as ort

        from ..hardware import ort_session_options

        return ort.InferenceSession(
            self._bytes_or_path, ort_session_options(threads), providers=["CPUExecutionProvider"]
        )

    def logits(self, x) -> np.ndarray:
        """Raw outputs for a normalised float batch ``[N,C,H,W]`` (torch tensor or numpy array)."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if self._fixed_batch is None and self.threads > 1 and len(x) >= self.threads * SPLIT_MIN_PER_THREAD:
            return self._split_logits(x)
        step = self._fixed_batch or max(len(x), 1)
        outs = [self.session.run(None, {self._input: x[i : i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(outs) if outs else np.zeros((0, self.num_classes), np.float32)

    def _split_logits(self, x: np.ndarray) -> np.ndarray:
        """``x`` in ``threads`` contiguous parts, run at once on one-thread sessions (see the class docs)."""
        if self._split_session is None:
            from concurrent.futures import ThreadPoolExecutor

            self._split_session = self._open(1)
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ferlab-onnx")
        parts = np.array_split(x, self.threads)
        run = self._split_session.run
        return np.concatenate(list(self._pool.map(lambda part: run(None, {self._input: part})[0], parts)))

    def predict_probs(self, crops, transform=None, batch_size: int = 256, tta: str = "none") -> np.ndarray:
        """Softmax probabilities ``[N, C]`` (float32) for uint8 crops ``[N,H,W(,3)]``.

        The one prediction loop, :func:`ferlab.runtime.predict.predict_probs`: the model's eval transform, the TTA
        views (``'none'``, ``'flip'``, ``'tencrop'``) and the mean of their softmaxes.
        """
        from ..runtime.predict import predict_probs

        return predict_probs(self, crops, transform, batch_size, tta)

    def __repr__(self) -> str:
        return f"OnnxModel({self.model_name}, classes={len(self.classes)}, source={self.source!r})"


def check_parity(model, onnx_path, images, tta: str = "none", batch_size: int = 64) -> float:
    """Max absolute difference between the ONNX file's and the PyTorch fp32 model's probabilities.

    Args:
        model: the PyTorch model (or a path/shipped name) the file was exported from.
        onnx_path: the ``.onnx`` file (or an :class:`OnnxModel`).
        images: uint8 face crops ``[N,H,W(,3)]``.
    """
    from ..runtime.predict import predict_probs
    from ..runtime.weights import load_reference

    model = load_reference(model)
    onnx_model = onnx_path if isinstance(onnx_path, OnnxModel) else OnnxModel.from_file(onnx_path)
    images = np.asarray(images)
    if images.dtype != np.uint8 or len(images) == 0:
        raise ConfigError(
            f"parity check needs a non-empty uint8 batch of crops, got {images.dtype} {images.shape}"
        )
    ref = predict_probs(model, images, batch_size=batch_size, tta=tta, precision="fp32")
    got = onnx_model.predict_probs(images, batch_size=batch_size, tta=tta)
    return float(np.abs(ref - got).max())


def parity_faces(n: int = 64, data_dir=None, seed: int = 0) -> tuple[np.ndarray, str]:
    """Crops for a parity check: the first ``n`` FER2013 test faces when the data is there, else noise."""
    try:
        from ..data import load_dataset

        images = load_dataset("fer2013", data_dir).split("test").images[:n]
        return np.ascontiguousarray(images), f"{len(images)} FER2013 test faces"
    except (FerlabError, OSError):  # no data is a normal case here: fall back to random crops
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), f"{n} random crops (no FER2013 data found)"
