"""The web service through FastAPI's TestClient: predictions, the page, and every kind of bad upload."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ferlab.infer.serve import MAX_UPLOAD, create_app


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tiny_weights):
    return TestClient(create_app(str(tiny_weights), precision="fp32"))


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    from skimage import data

    return _jpeg(data.astronaut())


def test_astronaut_has_one_face(client, astronaut):
    r = client.post("/predict", files={"file": ("astronaut.jpg", astronaut, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (512, 512)
    assert body["model"] == "tiny.safetensors" and body["ms"] > 0
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert len(face["probs"]) == 7 and abs(sum(face["probs"].values()) - 1) < 1e-4
    assert face["label"] == max(face["probs"], key=face["probs"].get)
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200  # her face, upper middle of the photo


def test_raw_body_and_png_work_too(client, astronaut):
    r = client.post("/predict", content=astronaut, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    buf = io.BytesIO()
    Image.open(io.BytesIO(astronaut)).convert("L").save(buf, "PNG")
    r = client.post("/predict", files={"image": ("a.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_blank_image_has_no_face(client):
    r = client.post("/predict", files={"file": ("blank.jpg", _jpeg(np.full((240, 320, 3), 180, np.uint8)))})
    assert r.status_code == 200
    assert r.json()["faces"] == [] and (r.json()["width"], r.json()["height"]) == (320, 240)


def test_upload_over_10_mb_is_413(client):
    big = b"\xff\xd8" + bytes(MAX_UPLOAD)  # JPEG magic + 10 MB: refused before decoding
    r = client.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "10.0 MB limit" in r.json()["detail"]
    r = client.post("/predict", content=big, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413


def test_text_file_is_rejected_with_a_message(client):
    r = client.post("/predict", files={"file": ("notes.txt", b"not a picture\n", "text/plain")})
    assert r.status_code == 415
    detail = r.json()["detail"]
    assert "notes.txt" in detail and "not an image" in detail
    r = client.post("/predict", content=b'{"a": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 415 and "Content-Type" in r.json()["detail"]


def test_corrupt_and_empty_uploads_are_400(client, astronaut):
    r = client.post("/predict", files={"file": ("cut.jpg", astronaut[:300], "image/jpeg")})
    assert r.status_code == 400 and "cut.jpg" in r.json()["detail"]
    r = client.post("/predict", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/predict")
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.post("/predict", files={"note": (None, "no file")})
    assert r.status_code == 400 and "no file" in r.json()["detail"]


def test_health_models_and_page(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny.safetensors"
    m = client.get("/models").json()
    assert m["shipped"] == ["default", "fast", "ferplus"] and set(m["available"]) <= set(m["shipped"])
    assert m["loaded"] == "tiny.safetensors" and m["architecture"] == "fernet_xs"
    assert m["classes"] == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'type="file"' in html and "<canvas" in html and "getUserMedia" in html
    assert "{{" not in html and str(MAX_UPLOAD) in html
    assert "http://" not in html and "https://" not in html  # self-contained: no CDN


def test_onnx_backend_serves_the_same(tiny_weights, astronaut):
    c = TestClient(create_app(str(tiny_weights), backend="onnx"))
    torch_face = TestClient(create_app(str(tiny_weights), precision="fp32"))
    a = c.post("/predict", files={"file": ("a.jpg", astronaut)}).json()["faces"]
    b = torch_face.post("/predict", files={"file": ("a.jpg", astronaut)}).json()["faces"]
    assert len(a) == len(b) == 1 and a[0]["label"] == b[0]["label"] and a[0]["box"] == b[0]["box"]


def test_cli_serve_has_help_and_bad_model_is_one_line(capsys, tmp_path):
    from ferlab.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--port" in capsys.readouterr().out
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.safetensors" in err


def test_pixel_bomb_is_413_from_its_header_in_under_a_second(client, tmp_path):
    """A 4.5 KB PNG claiming 6000x6000 (36 Mpx) is refused before decoding; the service stays responsive."""
    import time

    buf = io.BytesIO()
    Image.new("L", (6000, 6000), 0).save(buf, "PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 100_000
    t = time.perf_counter()
    r = client.post("/predict", files={"file": ("bomb.png", data, "image/png")})
    assert r.status_code == 413 and "6000x6000 = 36.0 Mpx is over the 16 Mpx limit" in r.json()["detail"]
    assert time.perf_counter() - t < 1.0
    assert client.get("/health").status_code == 200


def test_docs_are_off_unless_asked(tiny_weights):
    plain = TestClient(create_app(str(tiny_weights), precision="fp32"))
    assert plain.get("/docs").status_code == 404 and plain.get("/openapi.json").status_code == 404
    with_docs = TestClient(create_app(str(tiny_weights), precision="fp32", docs=True))
    assert with_docs.get("/openapi.json").status_code == 200


def test_a_stalled_body_gets_408(tiny_weights, monkeypatch):
    """A client that stops sending gets 408 after the read timeout instead of holding the request open."""
    import asyncio

    from ferlab.infer import serve

    monkeypatch.setattr(serve, "READ_TIMEOUT", 0.2)
    app = create_app(str(tiny_weights), precision="fp32")
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b"\xff\xd8\xff", "more_body": True}
        await asyncio.sleep(5)  # the client stalls
        return {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "root_path": "",
             "scheme": "http", "query_string": b"", "headers": [(b"content-type", b"image/jpeg")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "http_version": "1.1"}  # fmt: skip
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=3))
    start = next(m for m in sent if isinstance(m, dict) and m.get("type") == "http.response.start")
    assert start["status"] == 408
