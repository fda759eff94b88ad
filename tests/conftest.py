"""Shared fixtures and the ``real_data`` marker. ``FERLAB_DATA`` defaults to ``../shared/data`` beside the repository.

Tests that read the real FER2013/FER+ data are marked ``real_data`` (automatically when they use the
``data_root`` or ``fer2013`` fixtures, explicitly otherwise), so ``pytest -m real_data`` runs them apart and
``pytest -m "not real_data"`` runs everything else on a machine without the data. A test that reads the data
root without the mark fails, so the mark cannot go stale. The test tree mirrors ``src/ferlab`` (one folder
per layer).
"""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that spin while waiting make two processes on 2 cores 10-30x slower; yield instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("FERLAB_DATA", str(DEFAULT_DATA))
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers: one core each, no oversubscription
    os.environ.setdefault("FERLAB_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


REAL_DATA_FIXTURES = {"data_root", "fer2013"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(autouse=True)
def _real_data_declared(request, monkeypatch):
    """Fail a test that resolves the real data root without being marked ``real_data``."""
    from ferlab.data import base, registry

    touched = []
    real = base.resolve_root

    def spy(data_dir=None):
        root = real(data_dir)
        real_root = os.environ.get("FERLAB_DATA") or str(DEFAULT_DATA)
        if Path(root).resolve() == Path(real_root).resolve():
            touched.append(root)
        return root

    monkeypatch.setattr(base, "resolve_root", spy)
    monkeypatch.setattr(registry, "resolve_root", spy)
    yield
    if touched and request.node.get_closest_marker("real_data") is None:
        pytest.fail(
            f"{request.node.nodeid} reads the real data under {touched[0]}: mark it @pytest.mark.real_data"
        )


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ["FERLAB_DATA"])
    assert (root / "fer2013" / "fer2013.npz").is_file(), (
        f"real FER2013 data missing under {root} (set FERLAB_DATA)"
    )
    return root


@pytest.fixture(scope="session")
def fer2013(data_root):
    import ferlab

    return ferlab.load_dataset("fer2013", data_root)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A randomly initialised ``fernet_xs`` (7 FER2013 classes) exported as ferlab safetensors.

    For tests of the inference plumbing (predict, export, serve) that need *a* model file, not a good one;
    the shipped models' accuracy is tested on real data in ``test_shipped.py``.
    """
    import ferlab
    from ferlab.labels import CANONICAL
    from ferlab.runtime.files import export_weights

    torch.manual_seed(0)
    model = ferlab.create_model("fernet_xs", num_classes=7).eval()
    return export_weights(model, tmp_path_factory.mktemp("weights") / "tiny.safetensors", CANONICAL[:7])
