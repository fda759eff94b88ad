"""Data-parallel training: two CPU processes (gloo) train together, agree on the weights, and checkpoint."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ferlab
from ferlab import labels as L
from ferlab.engine import Trainer, load_checkpoint
from ferlab.engine.config import from_dict


def _splits():
    rng = np.random.default_rng(0)

    def mk(name, k):
        return ferlab.Split(
            name, rng.integers(0, 255, (k, 48, 48), dtype=np.uint8), rng.integers(0, 7, k), L.SEVEN
        )

    return {"train": mk("train", 64), "val": mk("val", 16), "test:test": mk("test", 16)}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = from_dict({"model": "smallcnn_tiny", "epochs": 2, "batch_size": 8, "progress": False, "tensorboard": False,
                         "output_dir": out, "name": "ddp", "scheduler": "none", "lr": 0.05})  # fmt: skip
        tr = Trainer(cfg, _splits(), L.SEVEN)
        assert tr.world == 2 and tr.steps_per_epoch == 4  # 64 images / 2 ranks / batch 8
        seen = tr.epoch_indices(0)
        tr.fit()
        flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
        torch.save({"params": flat, "seen": torch.as_tensor(seen)}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_training_agrees(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert not set(r0["seen"].tolist()) & set(r1["seen"].tolist())  # disjoint shards of each epoch
    ck = load_checkpoint(tmp_path / "ddp" / "last.pt")  # written by rank 0 only, after the last epoch
    assert ck["epoch"] == 2
    model = ferlab.create_model("smallcnn_tiny")
    model.load_state_dict(ck["model"])
    # rank 1 never reloads the best weights, so its final parameters are the last epoch's: DDP kept the
    # replicas identical, so they equal rank 0's last checkpoint
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(r1["params"], flat0)
