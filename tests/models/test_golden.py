"""Golden outputs: the seeded logits of the small models, so any change to what they compute is seen.

Each model is built with ``torch.manual_seed(0)`` and fed one seeded batch at its registered input; the
logits are compared with ``golden/logits.json`` (tolerance for the float rounding of other CPUs' kernels).
After an intended change, regenerate them on request::

    FERLAB_REGEN_GOLDEN=1 pytest tests/models/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import ferlab

GOLDEN = Path(__file__).parent / "golden" / "logits.json"
SMALL = ("smallcnn_tiny", "smallcnn", "fernet_xs", "fernet_s")


def _logits(name: str) -> list:
    torch.manual_seed(0)
    model = ferlab.create_model(name, num_classes=7).eval()
    x = torch.randn(2, *model.data_config.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x).double().tolist()


@pytest.fixture(scope="module")
def golden() -> dict:
    if os.environ.get("FERLAB_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps({n: _logits(n) for n in SMALL}, indent=1) + "\n")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", SMALL)
def test_seeded_logits_match_the_golden_file(golden, name):
    assert name in golden, f"no golden logits for {name}; regenerate with FERLAB_REGEN_GOLDEN=1"
    np.testing.assert_allclose(_logits(name), golden[name], rtol=1e-4, atol=1e-5)


def test_the_golden_check_sees_a_change(golden):
    # a perturbed model does not pass: the comparison can fail
    torch.manual_seed(0)
    model = ferlab.create_model("smallcnn_tiny", num_classes=7).eval()
    with torch.no_grad():
        next(model.parameters()).add_(1e-2)
        x = torch.randn(2, *model.data_config.input_size, generator=torch.Generator().manual_seed(1))
        out = model(x).double().numpy()
    assert not np.allclose(out, golden["smallcnn_tiny"], rtol=1e-4, atol=1e-5)
