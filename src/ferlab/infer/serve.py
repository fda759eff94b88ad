"""A web service and demo page for expression recognition: ``ferlab serve`` or :func:`create_app`.

Routes:
    ``POST /predict``  an image as a multipart upload (field ``file``; any single file field works) or as
                       the raw body with an ``image/*`` content type -> ``{"faces": [...], "width",
                       "height", "model", "ms"}``, one :meth:`ferlab.FacePrediction.to_dict` per face.
    ``GET /health``    ``{"status": "ok", ...}`` once the model is loaded.
    ``GET /models``    the shipped model names (and which are installed), the loaded model and its classes.
    ``GET /``          a self-contained page (no CDN): upload a photo or take a webcam snapshot, see the
                       faces boxed on a canvas and every class's probability as a bar.

Errors are JSON ``{"detail": message}``: 413 for uploads over ``max_upload`` bytes (10 MB) or images
over ``max_pixels`` (16 Mpx, read from the header before decoding), 415 for files that are not images,
400 for an empty, missing or corrupt upload, 408 for a body that stalls (10 s without data, 60 s in all).
Decoding runs in a worker thread outside the model's lock, so one slow upload holds up no other request.
FastAPI's ``/docs`` and ``/openapi.json`` are off unless ``docs=True`` (``ferlab serve --docs``).
Uploads are read into memory and decoded there, never written to disk (Starlette's own form parser
spools files over 1 MB to a temporary file, so the multipart body is parsed here instead).

Example:
    >>> from fastapi.testclient import TestClient
    >>> from ferlab.infer.serve import create_app
    >>> client = TestClient(create_app("default"))
    >>> client.post("/predict", files={"file": open("photo.jpg", "rb")}).json()["faces"][0]["label"]
    'happy'

Needs the ``web`` extra: ``pip install 'ferlab[web]'``.
"""

# no ``from __future__ import annotations``: FastAPI reads the route functions' annotations (``Request``,
# imported inside create_app) at definition time

import io
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError

MAX_UPLOAD = 10 * 1024 * 1024
#: largest image the service decodes (16 Mpx, e.g. 4896x3264); larger uploads get 413 from their header
MAX_PIXELS = 16_000_000
#: seconds a client may take to send the next chunk of its body, and the whole body (then 408)
READ_TIMEOUT, BODY_TIMEOUT = 10.0, 60.0
#: multipart headers and boundaries around the file on top of ``max_upload``
_MULTIPART_SLACK = 64 * 1024
PAGE = Path(__file__).parent.parent / "assets" / "serve.html"


class UploadError(Exception):
    """A bad upload: HTTP ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """The parts of a ``multipart/form-data`` body as ``(field name, filename or None, data)``, in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart upload without a boundary in its Content-Type")
    parts: list[tuple[str, str | None, bytes]] = []
    cur: dict = {}

    def on_part_begin():
        cur.clear()
        cur.update(headers={}, field=b"", value=b"", data=bytearray())

    def on_header_field(data, start, end):
        cur["field"] += data[start:end]

    def on_header_value(data, start, end):
        cur["value"] += data[start:end]

    def on_header_end():
        cur["headers"][cur["field"].lower()] = cur["value"]
        cur["field"], cur["value"] = b"", b""

    def on_part_data(data, start, end):
        cur["data"] += data[start:end]

    def on_part_end():
        _, disp = parse_options_header(cur["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        parts.append(
            (name, None if filename is None else filename.decode("utf-8", "replace"), bytes(cur["data"]))
        )

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as e:  # noqa: BLE001 - python-multipart raises several types for malformed bodies
        raise UploadError(400, f"malformed multipart upload ({str(e)[:120] or type(e).__name__})") from None
    return parts


def pick_file(parts: list[tuple[str, str | None, bytes]]) -> tuple[str, bytes]:
    """The uploaded image among the parts: the ``file``/``image`` field, else the only file given."""
    files = [p for p in parts if p[1] is not None or p[0] in ("file", "image")]
    chosen = [p for p in files if p[0] in ("file", "image")] or files
    if not chosen:
        raise UploadError(400, "no file in the upload: send the image in a form field named 'file'")
    name, filename, data = chosen[0]
    return filename or name or "upload", data


def decode_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> uint8 RGB ``[H, W, 3]``, EXIF-rotated upright, decoded in memory.

    The pixel count is read from the header first: an image over ``max_pixels`` is refused (413) before any
    pixel is decoded, so a small file that claims a huge image costs neither memory nor time.
    """
    from PIL import Image, UnidentifiedImageError

    from ..errors import ImageReadError
    from ..io import decode_image as _decode

    if not data:
        raise UploadError(400, f"{name}: empty upload (0 bytes); send an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except UnidentifiedImageError:
        raise UploadError(
            415, f"{name}: not an image file (format not recognised); send a JPEG, PNG, WebP, BMP or GIF"
        ) from None
    except Image.DecompressionBombError:
        raise UploadError(
            413, f"{name}: image has too many pixels (limit {max_pixels / 1e6:.0f} Mpx)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UploadError(400, f"{name}: corrupt or truncated image ({msg})") from None
    if w * h > max_pixels:
        raise UploadError(
            413, f"{name}: {w}x{h} = {w * h / 1e6:.1f} Mpx is over the {max_pixels / 1e6:.0f} Mpx limit"
        )
    try:
        arr = _decode(io.BytesIO(data), name, grayscale=False, limit=max_pixels)
    except ImageReadError as e:
        raise UploadError(400, str(e)) from None
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr


def _model_label(spec, model) -> str:
    if isinstance(spec, (str, Path)):
        return Path(spec).name if Path(str(spec)).suffix else str(spec)
    return str(getattr(model, "model_name", type(model).__name__))


def create_app(
    recognizer_or_model="default",
    detector: str | None = None,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "auto",
    max_upload: int = MAX_UPLOAD,
    max_pixels: int = MAX_PIXELS,
    docs: bool = False,
    **recognizer_kwargs,
):
    """The FastAPI app; the model is loaded here, once, before the app serves anything.

    Args:
        recognizer_or_model: a :class:`ferlab.Recognizer`, or what it takes as ``model``: a shipped name
            (``'default'``, ``'fast'``), a checkpoint / ``.safetensors`` path, or a model object.
        detector, backend, device, precision: passed to :class:`ferlab.Recognizer` (unless one is given).
        max_upload: largest accepted upload in bytes (larger -> 413).
        max_pixels: largest image in pixels (larger -> 413, from the header, before decoding).
        docs: serve FastAPI's ``/docs``, ``/redoc`` and ``/openapi.json`` (off by default).
        recognizer_kwargs: more :class:`ferlab.Recognizer` arguments (``tta``, ``margin``, ...).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError:
        raise ConfigError("ferlab serve needs the web extra: pip install 'ferlab[web]'") from None

    from .._version import __version__
    from .recognizer import PRETRAINED, Recognizer, list_pretrained

    if isinstance(recognizer_or_model, Recognizer):
        rec = recognizer_or_model
        label = _model_label(None, rec.model)
    else:
        rec = Recognizer(
            recognizer_or_model,
            detector=detector,
            device=device,
            precision=precision,
            backend=backend,
            **recognizer_kwargs,
        )
        label = _model_label(recognizer_or_model, rec.model)
    arch = str(getattr(rec.model, "model_name", type(rec.model).__name__))
    lock = threading.Lock()  # one inference at a time: the lazily built detector and CPU threads are shared
    started = time.time()
    page = (
        PAGE.read_text(encoding="utf-8")
        .replace("{{MAX_UPLOAD}}", str(int(max_upload)))
        .replace("{{VERSION}}", __version__)
    )

    api_docs = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(
        title="ferlab", version=__version__, description="Facial expression recognition", **api_docs
    )
    app.state.recognizer = rec
    app.state.max_upload = int(max_upload)

    def error(status: int, message: str):
        return JSONResponse({"detail": message}, status_code=status)

    async def read_body(request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise UploadError(413, f"upload of {_mb(int(length))} is over the {_mb(max_upload)} limit")
        import asyncio

        body = bytearray()
        stream = request.stream().__aiter__()
        deadline = time.monotonic() + BODY_TIMEOUT
        while True:
            left = min(READ_TIMEOUT, deadline - time.monotonic())
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(left, 0.001))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise UploadError(408, f"the upload stalled (no data for {READ_TIMEOUT:g} s or over "
                                       f"{BODY_TIMEOUT:g} s in all)") from None  # fmt: skip
            body += chunk
            if len(body) > limit:
                raise UploadError(413, f"upload is over the {_mb(max_upload)} limit")
        return bytes(body)

    @app.post("/predict")
    async def predict(request: Request):
        """Faces and expression probabilities of one uploaded image."""
        t = time.perf_counter()
        ctype = request.headers.get("content-type", "")
        try:
            body = await read_body(request, int(max_upload) + _MULTIPART_SLACK)
            if not body:
                raise UploadError(400, "empty request: upload an image file in the form field 'file'")
            if ctype.startswith("multipart/form-data"):
                name, data = pick_file(parse_multipart(body, ctype))
            elif ctype.startswith("image/") or ctype in ("", "application/octet-stream"):
                name, data = "upload", body
            else:
                raise UploadError(
                    415,
                    f"unsupported Content-Type {ctype.split(';')[0]!r}; upload the image as multipart "
                    "form field 'file' or as a raw image/* body",
                )
            if len(data) > max_upload:
                raise UploadError(413, f"{name}: {_mb(len(data))} is over the {_mb(max_upload)} limit")
            # decoded in a worker thread, outside the model's lock: a slow decode holds up no other request
            img = await run_in_threadpool(decode_image, data, name, int(max_pixels))
        except UploadError as e:
            return error(e.status, e.message)

        def run():
            with lock:
                return rec.predict(img)

        faces = await run_in_threadpool(run)
        return {
            "faces": [f.to_dict() for f in faces],
            "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "model": label,
            "ms": round(1000 * (time.perf_counter() - t), 1),
        }

    @app.get("/health")
    def health():
        """Liveness: the model is loaded and the service answers."""
        return {
            "status": "ok",
            "model": label,
            "backend": rec.backend,
            "uptime_s": round(time.time() - started, 1),
        }

    @app.get("/models")
    def models():
        """The shipped models, the loaded one and its classes."""
        return {
            "shipped": list(PRETRAINED),
            "available": list_pretrained(available_only=True),
            "loaded": label,
            "architecture": arch,
            "classes": list(rec.classes),
            "input_size": list(rec.data_config.input_size),
            "backend": rec.backend,
            "precision": rec.precision,
            "detector": rec._detector_spec
            if isinstance(rec._detector_spec, str)
            else type(rec._detector_spec).__name__,
            "max_upload": int(max_upload),
        }

    @app.get("/", response_class=HTMLResponse)
    def index():
        """The demo page."""
        return HTMLResponse(page)

    return app


def run(host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **app_kwargs) -> None:
    """Load the model, then serve the app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("ferlab serve needs the web extra: pip install 'ferlab[web]'") from None
    model = app_kwargs.pop("model", "default")
    app = create_app(model, **app_kwargs)
    print(f"ferlab serve: {app.state.recognizer!r} on http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level)
