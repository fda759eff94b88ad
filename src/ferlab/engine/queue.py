"""A training queue: many recipes, one command, resumable after a kill or in the next session.

A queue file (YAML) lists runs in order; each names a recipe, optional ``key=value`` overrides and, for the
zoo table, what the paper reported::

    runs:
      - config: configs/emonext_tiny/fer2013_cpu.yaml
        paper: {accuracy: 76.12, dataset: FER2013 PrivateTest, input: 236 px, source: "..."}

``run_queue`` trains the runs one after another in this process: a run whose ``summary.json`` exists is
done and skipped, a run with a ``last.pt`` resumes where it stopped (the Trainer's own resume, its time
budget ``max_minutes`` summed over resumes), and a run that fails is reported and the queue goes on. A lock
(``flock``) in each run folder keeps two queue processes from training the same run: started twice, the queue
trains two runs at a time, each process taking the next run nobody holds. ``queue_status`` reads the
run folders only, so it is cheap to call while the queue trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, FerlabError
from .config import TrainConfig, load_config
from .history import best_val_acc


@dataclass
class QueueEntry:
    """One run of a queue: a recipe, its overrides, and what the paper reported (free-form, for tables)."""

    config: str
    overrides: list = field(default_factory=list)
    paper: dict = field(default_factory=dict)

    def train_config(self, extra=None) -> TrainConfig:
        return load_config(self.config, [*self.overrides, *(extra or [])])


def load_queue(path: str | Path) -> list[QueueEntry]:
    """Read a queue file; every recipe in it must load (so a typo fails before hours of training)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"queue file {p} not found")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    runs = d.get("runs") if isinstance(d, dict) else None
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{p}: expected a non-empty list under 'runs:'")
    out = []
    for i, r in enumerate(runs):
        if not isinstance(r, dict) or "config" not in r:
            raise ConfigError(f"{p}: run {i + 1} needs a 'config:' path")
        bad = sorted(set(r) - {"config", "overrides", "paper"})
        if bad:
            raise ConfigError(
                f"{p}: run {i + 1}: unknown key(s) {', '.join(bad)}; valid: config, overrides, paper"
            )
        e = QueueEntry(str(r["config"]), list(r.get("overrides") or []), dict(r.get("paper") or {}))
        e.train_config()  # validates the recipe now
        out.append(e)
    names = [e.train_config().run_name for e in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{p}: run name(s) {', '.join(dup)} appear twice; give each run its own name")
    return out


def run_state(cfg: TrainConfig) -> dict:
    """What the run folder says: ``done`` (summary.json), ``partial`` (last.pt) or ``pending``."""
    d = cfg.run_dir
    if (d / "summary.json").is_file():
        s = json.loads((d / "summary.json").read_text())
        return {"state": "done", "epochs": s.get("epochs_run"), "train_min": s.get("train_time_s", 0) / 60,
                "summary": s}  # fmt: skip
    if (d / "last.pt").is_file():
        from ..runtime.files import load_checkpoint

        with contextlib.suppress(FerlabError, OSError, KeyError, RuntimeError):
            ck = load_checkpoint(d / "last.pt")
            return {"state": "partial", "epochs": ck["epoch"], "train_min": ck.get("train_time", 0.0) / 60}
        return {"state": "partial", "epochs": None, "train_min": None}
    return {"state": "pending", "epochs": 0, "train_min": 0.0}


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the live queue process training this run (it holds the run's lock), or None."""
    with RunLock(run_dir, create=False) as lock:
        return lock.busy


def queue_status(path: str | Path, overrides=None) -> list[dict]:
    """One row per run: name, model, state, epochs done, training minutes, best validation accuracy."""
    rows = []
    for e in load_queue(path):
        cfg = e.train_config(overrides)
        st = run_state(cfg)
        pid = lock_holder(cfg.run_dir)
        if pid is not None and st["state"] != "done":
            st["state"] = f"training (pid {pid or '?'})"
        rows.append({"name": cfg.run_name, "model": cfg.model, "budget_min": cfg.max_cpu_minutes or cfg.max_minutes, **st,
                     "best_val_acc": best_val_acc(cfg.run_dir)})  # fmt: skip
    return rows


class RunLock:
    """An exclusive lock on one run folder: ``flock`` on ``<run_dir>/.queue.lock``, which holds the pid.

    The kernel holds the lock for the process and drops it when the process ends however it ends (killed,
    machine restarted), so there is no stale lock to take over and no window in which two processes both
    believe they hold it. ``busy`` is the holder's pid (0 if unreadable) when another process holds it, else
    None. The file itself stays (removing a locked file would let a third process lock a new one).
    Without ``fcntl`` (Windows) there is no cross-process lock and two queue processes must not share a folder.
    """

    def __init__(self, folder: Path, create: bool = True):
        self.path = Path(folder) / ".queue.lock"
        self.create = create
        self.busy: int | None = None
        self._fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover (Windows)
            return self
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if self.create else 0), 0o644)
        except FileNotFoundError:
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            with contextlib.suppress(ValueError, OSError):
                self.busy = int(self.path.read_text().strip() or 0)
            self.busy = self.busy or 0
            return self
        if not self.create:  # only asked who holds it: nobody
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return self
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def run_queue(path: str | Path, only=None, overrides=None, log=print) -> list[dict]:
    """Train every pending or partial run of the queue in order; returns one result row per run.

    ``only``: run names or model names to train (others are left alone). ``overrides``: ``key=value``
    applied to every run (e.g. ``threads=2``). Failures are caught, reported and counted; the queue goes on.
    """
    from .trainer import Trainer

    entries = load_queue(path)
    results = []
    cfgs = [e.train_config(overrides) for e in entries]
    if only:
        unknown = sorted(set(only) - {c.run_name for c in cfgs} - {c.model for c in cfgs})
        if unknown:
            raise ConfigError(
                f"--only {', '.join(unknown)}: not in {path}; runs: {', '.join(c.run_name for c in cfgs)}"
            )
        cfgs = [c for c in cfgs if c.run_name in only or c.model in only]
    for i, cfg in enumerate(cfgs):
        st = run_state(cfg)
        head = f"[{i + 1}/{len(cfgs)}] {cfg.run_name}"
        if st["state"] == "done":
            log(f"{head}: done already ({st['epochs']} epochs, {st['train_min']:.0f} min), skipped")
            results.append({"name": cfg.run_name, "status": "done before"})
            continue
        with RunLock(cfg.run_dir) as lock:
            if lock.busy is not None:
                log(f"{head}: another queue process (pid {lock.busy or '?'}) is training it, skipped")
                results.append({"name": cfg.run_name, "status": "busy"})
                continue
            st = run_state(cfg)  # read again under the lock: another process may have just finished it
            if st["state"] == "done":
                results.append({"name": cfg.run_name, "status": "done before"})
                continue
            budget = (f"{cfg.max_cpu_minutes:g} CPU-min" if cfg.max_cpu_minutes else
                      f"{cfg.max_minutes:g} min" if cfg.max_minutes else "no time budget")  # fmt: skip
            log(f"{head}: {'resuming' if st['state'] == 'partial' else 'starting'} ({cfg.model}, {budget})")
            t = time.perf_counter()
            try:
                summary = Trainer(cfg).fit()
                results.append({"name": cfg.run_name, "status": "trained", **summary})
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 (one failed run must not stop the queue)
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                log(f"{head}: FAILED after {time.perf_counter() - t:.0f} s: {type(e).__name__}: {msg}")
                if not isinstance(e, FerlabError):
                    log(traceback.format_exc())
                results.append(
                    {"name": cfg.run_name, "status": "failed", "error": f"{type(e).__name__}: {msg}"}
                )
    failed = [r["name"] for r in results if r["status"] == "failed"]
    log(
        f"queue {path}: {len(results)} runs, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    return results
