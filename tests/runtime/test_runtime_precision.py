"""The precision policy (ferlab.runtime.precision) and the thread budget (ferlab.hardware).

The slow-CPU path is forced with FERLAB_NO_FAST_BF16=1, so these tests run the same on a CPU with fast
bf16 and on an AVX2-only one; a fake fast CPU is made by patching the cached CPU facts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferlab
from ferlab import hardware
from ferlab.engine.config import from_dict, load_config
from ferlab.engine.trainer import Trainer
from ferlab.errors import ConfigError
from ferlab.labels import CANONICAL
from ferlab.runtime import precision as P


@pytest.fixture(autouse=True)
def _fresh_policy(monkeypatch):
    for var in (P.FAST_BF16_ENV, "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    P._reset_for_tests()
    yield
    P._reset_for_tests()


def _fake_cpu(monkeypatch, flags):
    monkeypatch.setattr(hardware, "_read_cpuinfo", lambda: ("Test CPU 9000", frozenset(flags)))
    P._reset_for_tests()


def test_flags_decide_fast_bf16(monkeypatch):
    _fake_cpu(monkeypatch, ["avx2", "avx512f", "avx512_bf16"])
    assert hardware.cpu_info().fast_bf16 and P.cpu_has_fast_bf16()
    _fake_cpu(monkeypatch, ["avx2", "amx_bf16", "amx_tile"])
    assert P.cpu_has_fast_bf16()
    _fake_cpu(monkeypatch, ["avx2", "fma"])  # an AVX2-only EPYC
    info = hardware.cpu_info()
    assert not info.fast_bf16 and "no AVX512-BF16/AMX" in info.reason
    assert info.summary() == "Test CPU 9000 [avx2]; fast bf16: no"


def test_switches_force_the_slow_path(monkeypatch):
    _fake_cpu(monkeypatch, ["avx2", "avx512f", "avx512_bf16", "amx_bf16"])
    monkeypatch.setenv(P.FAST_BF16_ENV, "1")
    P._reset_for_tests()
    assert not P.cpu_has_fast_bf16() and "FERLAB_NO_FAST_BF16" in hardware.cpu_info().reason
    monkeypatch.setenv(P.FAST_BF16_ENV, "0")  # 0 means off
    P._reset_for_tests()
    assert P.cpu_has_fast_bf16()
    for var, val in (("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2")):
        monkeypatch.setenv(var, val)
        P._reset_for_tests()
        assert not P.cpu_has_fast_bf16() and f"{var}=" in hardware.cpu_info().reason
        monkeypatch.delenv(var)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a cap that keeps bf16
    P._reset_for_tests()
    assert P.cpu_has_fast_bf16()


def test_auto_says_once_what_it_chose_and_why(monkeypatch, capsys):
    _fake_cpu(monkeypatch, ["avx2"])
    assert P.resolve_precision("auto") == "fp32"
    assert P.resolve_precision("auto", "cpu") == "fp32"
    err = capsys.readouterr().err
    assert err.count("precision auto -> fp32") == 1 and "no AVX512-BF16/AMX" in err and "Test CPU 9000" in err
    _fake_cpu(monkeypatch, ["avx512_bf16"])
    assert P.resolve_precision("auto") == "bf16"
    assert "precision auto -> bf16 (native bf16 (avx512_bf16)" in capsys.readouterr().err
    assert P.resolve_precision("auto", "cuda:0", quiet=True) == "fp16"
    assert P.resolve_precision("fp32") == "fp32" and capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        P.resolve_precision("int4")


def test_explicit_bf16_on_a_slow_cpu_runs_but_warns(monkeypatch):
    _fake_cpu(monkeypatch, ["avx2"])
    with pytest.warns(RuntimeWarning, match="bf16 was asked for on a CPU without fast bf16"):
        assert P.resolve_precision("bf16") == "bf16"
    _fake_cpu(monkeypatch, ["amx_bf16"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve_precision("bf16") == "bf16"


def _splits(n=48):
    rng = np.random.default_rng(0)
    seven = CANONICAL[:7]

    def mk(name, k):
        return ferlab.Split(
            name, rng.integers(0, 255, (k, 48, 48), dtype=np.uint8), rng.integers(0, 7, k), seven
        )

    return {"train": mk("train", n), "val": mk("val", 16)}, seven


def _conv_output_dtypes(trainer):
    seen = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    h = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen, h


@pytest.mark.parametrize("fast", [False, True])
def test_trainer_follows_the_policy(monkeypatch, tmp_path, capsys, fast):
    """The forced slow-CPU path trains in fp32 and says so; a fast-bf16 CPU trains under bf16 autocast."""
    if fast:
        _fake_cpu(monkeypatch, ["avx2", "avx512_bf16"])
    else:
        monkeypatch.setenv(P.FAST_BF16_ENV, "1")
        P._reset_for_tests()
    cfg = from_dict({"model": "smallcnn_tiny", "epochs": 1, "batch_size": 16, "progress": False,
                     "tensorboard": False, "output_dir": str(tmp_path), "name": "run", "scheduler": "none",
                     "precision": "auto", "threads": 1})  # fmt: skip
    splits, classes = _splits()
    tr = Trainer(cfg, splits, classes)
    seen, h = _conv_output_dtypes(tr)
    s = tr.fit()
    h.remove()
    want = torch.bfloat16 if fast else torch.float32
    assert tr.precision == s["precision"] == ("bf16" if fast else "fp32")
    train_dtypes = set(seen[: tr.steps_per_epoch])  # validation runs in fp32 either way
    assert train_dtypes == {want}, train_dtypes
    out = capsys.readouterr()
    said = out.err + out.out
    assert f"precision auto -> {'bf16' if fast else 'fp32'}" in said
    assert ("FERLAB_NO_FAST_BF16 is set" in said) != fast
    assert f"precision {tr.precision}, 1 thread(s)" in said


def test_recipes_use_auto_and_old_amp_keys_still_load(tmp_path):
    from pathlib import Path

    for p in sorted(Path(__file__).resolve().parents[2].glob("configs/**/*.yaml")):
        text = p.read_text()
        assert "amp:" not in text, f"{p}: use 'precision: auto' instead of amp"
        if "precision:" in text:
            assert load_config(p).precision == "auto", p
    old = tmp_path / "old.yaml"
    old.write_text("model: smallcnn\namp: true\n")
    assert load_config(old).precision == "auto"
    old.write_text("model: smallcnn\namp: false\n")
    assert load_config(old).precision == "fp32"
    with pytest.raises(ConfigError, match="'precision'"):
        from_dict({"precision": "fp8"})


def test_thread_budget(monkeypatch):
    monkeypatch.setattr(hardware, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(hardware.THREADS_ENV, raising=False)
    assert hardware.default_threads() == 2
    monkeypatch.setenv(hardware.THREADS_ENV, "8")  # never more than the cores this process may use
    assert hardware.default_threads() == 2
    monkeypatch.setenv(hardware.THREADS_ENV, "1")
    assert hardware.default_threads() == 1
    before = torch.get_num_threads()
    try:
        assert hardware.configure_threads() == 1 and torch.get_num_threads() == 1
        assert hardware.configure_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be a whole number >= 1"):
        hardware.configure_threads(0)


def test_ort_sessions_wait_passively():
    pytest.importorskip("onnxruntime")
    so = hardware.ort_session_options(2)
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
