"""The training queue (``ferlab zoo train``) and the zoo table, on tiny recipes.

Two real recipes train a few steps each on a small cached sample of real FER2013 faces; a third points at a
missing dataset file and must fail without stopping the queue. The table then evaluates the finished runs
on the real PrivateTest.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml

import ferlab
from ferlab.cli import main
from ferlab.data.base import FERDataset
from ferlab.data.cache import save_dataset
from ferlab.engine.queue import load_queue, queue_status, run_queue
from ferlab.errors import ConfigError


@pytest.fixture
def queue(tmp_path, fer2013):
    idx = np.arange(0, 28709, 97)[:256]
    small = FERDataset("fer2013", fer2013.classes, {"train": fer2013["train"].subset(idx),
                                                      "val": fer2013["val"].subset(np.arange(64))})  # fmt: skip
    cache = save_dataset(small, tmp_path / "small.npz")
    base = {"dataset": f"cache:{cache}", "test_splits": [], "epochs": 3, "batch_size": 32,
            "limit_train_batches": 2, "scheduler": "none", "optimizer": "adam", "lr": 0.002, "progress": False,
            "tensorboard": False, "output_dir": str(tmp_path / "runs"), "threads": 1, "precision": "auto"}  # fmt: skip
    recipes = {
        "a": {**base, "model": "smallcnn_tiny", "name": "tiny-a"},
        "b": {**base, "model": "fernet_xs", "name": "xs-b", "max_minutes": 1e-6},  # stopped by its budget
        "c": {
            **base,
            "model": "smallcnn_tiny",
            "name": "broken-c",
            "dataset": f"cache:{tmp_path / 'nope.npz'}",
        },
    }
    runs = []
    for k, r in recipes.items():
        (tmp_path / f"{k}.yaml").write_text(yaml.safe_dump(r))
        runs.append({"config": str(tmp_path / f"{k}.yaml"), "paper": {"accuracy": 70.0 + len(runs),
                     "dataset": "FER2013 test", "input": "224 px"}})  # fmt: skip
    q = tmp_path / "queue.yaml"
    q.write_text(yaml.safe_dump({"runs": runs}))
    return q


def test_queue_trains_skips_and_survives_a_failure(queue, tmp_path):
    said = []
    res = run_queue(queue, log=said.append)
    assert [r["status"] for r in res] == ["trained", "trained", "failed"]
    assert "broken-c" in res[2]["error"] or "nope.npz" in res[2]["error"]
    assert res[0]["epochs_run"] == 3 and not res[0]["budget_reached"]
    assert res[1]["epochs_run"] == 1 and res[1]["budget_reached"], res[1]  # the budget ends it after epoch 1
    assert any("FAILED" in s for s in said) and "3 runs, 1 failed" in said[-1]
    # rerun: the finished runs are skipped, the broken one is tried again
    res2 = run_queue(queue, log=said.append)
    assert [r["status"] for r in res2] == ["done before", "done before", "failed"]
    st = {r["name"]: r for r in queue_status(queue)}
    assert st["tiny-a"]["state"] == "done" and st["tiny-a"]["epochs"] == 3
    assert st["broken-c"]["state"] == "pending" and st["xs-b"]["best_val_acc"] is not None
    # --only and its errors
    assert run_queue(queue, only=["tiny-a"], log=said.append)[0]["status"] == "done before"
    with pytest.raises(ConfigError, match="--only nope: not in"):
        run_queue(queue, only=["nope"], log=said.append)


def test_queue_resumes_a_partial_run(queue, tmp_path):
    q = load_queue(queue)
    cfg = q[0].train_config(["epochs=1"])
    from ferlab.engine.trainer import Trainer

    Trainer(cfg).fit()
    (cfg.run_dir / "summary.json").unlink()  # as if killed after epoch 1 (last.pt stays)
    assert queue_status(queue)[0]["state"] == "partial"
    said = []
    res = run_queue(queue, only=["tiny-a"], log=said.append)
    assert "resuming" in said[0] and res[0]["epochs_run"] == 3
    hist = json.loads((cfg.run_dir / "summary.json").read_text())
    assert hist["epochs_run"] == 3


@pytest.fixture
def scored(tmp_path, fer2013):
    """Where the table and the study score the runs: 300 real PublicTest and 300 real PrivateTest faces."""
    ds = FERDataset("fer2013", fer2013.classes, {"val": fer2013["val"].subset(np.arange(300)),
                                                   "test": fer2013["test"].subset(np.arange(300))})  # fmt: skip
    return f"cache:{save_dataset(ds, tmp_path / 'scored.npz')}"


def test_zoo_table_reads_the_runs(queue, tmp_path, scored, capsys):
    run_queue(queue, log=lambda s: None)
    out = tmp_path / "docs" / "zoo.md"
    table = ["zoo", "table", "--queue", str(queue), "--out", str(out), "--dataset", scored]
    assert main(table) == 0
    text = out.read_text()
    rows = {r["run"]: r for r in json.loads(out.with_suffix(".json").read_text())}
    a = rows["tiny-a"]
    assert a["state"] == "done" and 0.0 < a["acc"] < 1.0 and 0.0 < a["acc_flip"] < 1.0
    assert a["params"] == sum(p.numel() for p in ferlab.create_model("smallcnn_tiny").parameters())
    assert set(a["recall"]) == set(ferlab.CANONICAL[:7]) and a["input"] == "1x48x48"
    assert rows["xs-b"]["budget_reached"] and rows["broken-c"]["state"] == "pending"
    assert "| smallcnn_tiny | 1x48x48 |" in text and "**pending**" in text and "| budget |" in text
    assert (
        "(300 faces)" in text
        and "70.00 %" in text
        and (tmp_path / "docs" / "zoo_curves.png").stat().st_size > 10_000
    )
    assert main(["zoo", "status", "--queue", str(queue)]) == 0
    assert "tiny-a" in capsys.readouterr().out
    from ferlab.hardware import cpu_info

    assert a["cpu"] == cpu_info().summary() and len(a["curve"]) == 3 and a["curve"][-1][0] > 0
    cache = tmp_path / "runs" / ".cache" / "probs"  # 2 finished runs x (plain, flip) on PrivateTest
    entries = {f.name: f.stat().st_mtime_ns for f in cache.glob("*.npz")}
    assert len(entries) == 4
    # a new machine: tiny-a's run folder is gone; its finished row is kept from the JSON, marked, curve included
    import shutil

    shutil.rmtree(tmp_path / "runs" / "tiny-a")
    (tmp_path / "runs" / "tiny-a").mkdir()  # an empty folder (a lock, a start that failed) is not a result
    assert main(table) == 0
    rows2 = {r["run"]: r for r in json.loads(out.with_suffix(".json").read_text())}
    assert (
        rows2["tiny-a"]["kept"]
        and rows2["tiny-a"]["acc"] == a["acc"]
        and rows2["tiny-a"]["curve"] == a["curve"]
    )
    assert not rows2["xs-b"].get("kept") and " * |" in out.read_text() and " * |" not in text
    # xs-b was scored from the cache: same figures, no entry rewritten or added
    assert (
        rows2["xs-b"]["acc"] == rows["xs-b"]["acc"] and rows2["xs-b"]["acc_flip"] == rows["xs-b"]["acc_flip"]
    )
    assert {f.name: f.stat().st_mtime_ns for f in cache.glob("*.npz")} == entries


def test_two_queue_processes_share_the_runs(queue, tmp_path):
    """A run locked by another live process is left to it; when that process dies, the run is free again."""
    import subprocess
    import sys

    from ferlab.engine.queue import RunLock, lock_holder

    lock_file = tmp_path / "runs" / "tiny-a" / ".queue.lock"
    lock_file.parent.mkdir(parents=True)
    holder = ("import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
              "f.truncate(0); f.write(str(os.getpid())); f.flush(); print('locked', flush=True); time.sleep(120)")  # fmt: skip
    other = subprocess.Popen(
        [sys.executable, "-c", holder, str(lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "locked"
        with RunLock(lock_file.parent) as lock:
            assert lock.busy == other.pid
        assert lock_holder(lock_file.parent) == other.pid
        assert {r["name"]: r["state"] for r in queue_status(queue)}["tiny-a"] == f"training (pid {other.pid})"
        said = []
        res = run_queue(queue, only=["tiny-a", "xs-b"], log=said.append)
        assert [r["status"] for r in res] == ["busy", "trained"]
        assert any(f"pid {other.pid}" in s for s in said)
        assert not (tmp_path / "runs" / "tiny-a" / "summary.json").exists()
        assert lock_holder(tmp_path / "runs" / "xs-b") is None  # released after its run
        with RunLock(tmp_path / "runs" / "xs-b") as mine, RunLock(tmp_path / "runs" / "xs-b") as again:
            assert mine.busy is None and again.busy == os.getpid()  # a second holder is refused, even here
    finally:
        other.kill()
        other.wait()
    # the holder is gone (killed): the kernel dropped its lock, the pid left in the file means nothing
    assert lock_file.read_text() == str(other.pid) and lock_holder(lock_file.parent) is None
    res = run_queue(queue, only=["tiny-a"], log=lambda s: None)
    assert [r["status"] for r in res] == ["trained"]


def test_overrides_may_follow_options(queue, monkeypatch):
    """`ferlab zoo train --threads 1 epochs=1` and the same with the override first both reach the queue."""
    import ferlab.engine.queue as q

    seen, names = [], []

    def fake(path, only=None, overrides=None):
        seen.append(overrides)
        names.append(only)
        return []

    monkeypatch.setattr(q, "run_queue", fake)
    assert main(["zoo", "train", "--queue", str(queue), "--threads", "1", "epochs=1"]) == 0
    assert main(["zoo", "train", "epochs=1", "--queue", str(queue), "--threads", "1"]) == 0
    assert (
        main(
            ["zoo", "train", "--queue", str(queue), "--only", "tiny-a", "xs-b", "epochs=1", "--threads", "1"]
        )
        == 0
    )
    assert seen[0] == seen[1] == seen[2] == ["epochs=1", "threads=1"]
    assert names == [None, None, ["tiny-a", "xs-b"]]  # an override after --only's names is not a name
    assert main(["zoo", "train", "--queue", str(queue), "--only", "epochs=1"]) == 2  # no names: refused
    with pytest.raises(SystemExit):
        main(["zoo", "train", "--queue", str(queue), "--bogus"])


def test_ship_writes_small_runs_as_fp16_that_load_by_name(queue, tmp_path, monkeypatch):
    import torch

    from ferlab.analysis.zoo import ship_zoo
    from ferlab.infer import Recognizer
    from ferlab.runtime import weights
    from ferlab.runtime.files import load_model

    run_queue(queue, only=["tiny-a"], log=lambda s: None)
    out = tmp_path / "zoo"
    rows = ship_zoo(
        queue, out, max_mb=0.1
    )  # smallcnn_tiny: 74,159 params = 0.15 MB in fp16 -> over the limit
    assert rows[0]["state"] == "done" and rows[0]["mb"] > 0.1 and rows[0]["shipped"] is None
    assert [r["state"] for r in rows[1:]] == ["pending", "pending"] and not out.exists()
    rows = ship_zoo(queue, out, max_mb=20)
    f = out / "smallcnn_tiny.safetensors"
    assert rows[0]["shipped"] == str(f)
    from safetensors.torch import load_file

    assert all(t.dtype == torch.float16 for t in load_file(str(f)).values() if t.is_floating_point())
    fp32, _, _ = load_model(tmp_path / "runs" / "tiny-a" / "model.safetensors")
    monkeypatch.setattr(weights, "ZOO_DIR", out)
    assert weights.list_zoo() == ["zoo/smallcnn_tiny"]
    r = Recognizer("zoo/smallcnn_tiny", precision="fp32")
    crops = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    from ferlab.runtime.predict import predict_probs

    np.testing.assert_allclose(r.predict_proba(crops), predict_probs(fp32, crops), atol=2e-3)  # fp16 rounding
    with pytest.raises(ConfigError, match="exists"):
        ship_zoo(queue, out)
    with pytest.raises(ConfigError, match=r"not shipped.*zoo/smallcnn_tiny"):
        Recognizer("zoo/pattlite")


def test_zoo_ensemble_combines_the_finished_runs(queue, tmp_path, scored, tiny_weights, capsys):
    from ferlab.analysis.zoo import zoo_ensemble

    run_queue(queue, only=["tiny-a", "xs-b"], log=lambda s: None)
    data = scored
    out = tmp_path / "docs" / "ens.md"
    r = zoo_ensemble(queue, out, ["tiny-a", "xs-b", "broken-c"], [str(tiny_weights)], dataset=data)
    assert list(r["pools"]) == ["members", "members + tiny"]
    # two runs of one model are named by their runs; only finished runs are combined
    assert r["pools"]["members"] == ["tiny-a", "fernet_xs"] and r["models"][0]["n"] == 300
    assert r["missing_members"] == ["broken-c (pending)"]
    assert json.loads(out.with_suffix(".json").read_text())["pools"] == r["pools"]
    text = out.read_text()
    assert (
        "not finished, left out: broken-c (pending)" in text
        and "| members + tiny | greedy, weighted |" in text
    )
    assert (tmp_path / "docs" / "ens_disagreement.png").stat().st_size > 1000
    # the command line: an existing report is not replaced without --overwrite (refused before any scoring)
    assert main(["zoo", "ensemble", "--queue", str(queue), "--only", "xs-b", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="both be named 'fernet_xs'"):
        zoo_ensemble(
            queue, tmp_path / "e2.md", ["xs-b"], [str(tiny_weights.with_name("fernet_xs.safetensors"))]
        )
    with pytest.raises(ConfigError, match="Markdown"):
        zoo_ensemble(queue, tmp_path / "e2.json", ["xs-b"])
    with pytest.raises(ConfigError, match="not a run or model"):
        zoo_ensemble(queue, tmp_path / "e2.md", ["nope"])
