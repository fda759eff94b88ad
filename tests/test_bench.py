"""Benchmarks run end to end (their figures are reported in the README, never asserted)."""

from __future__ import annotations

import numpy as np


def test_bench_predict_reports_every_figure(tiny_weights):
    from ferlab.bench import bench_photos, bench_predict, format_predict_rows

    photo = bench_photos((320, 240))
    assert photo.shape == (240, 320, 3) and photo.dtype == np.uint8
    faces = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    row = bench_predict(
        str(tiny_weights), threads=1, batch_size=32, repeats=1, faces=faces, photo_sizes=((320, 240),)
    )
    assert row["batch"] == 32 and row["net"] == "fernet_xs"
    assert row["faces_per_s"] > 0 and row["faces_per_s_b1"] > 0 and row["photo_320x240_per_s"] > 0
    assert row["faces_in_320x240"] == 1  # the astronaut's face
    table = format_predict_rows([row])
    assert "photos/s 320x240" in table and "fernet_xs" in table


def test_bench_train_auto_batch_and_time_budget():
    from ferlab.bench import auto_batch_size, bench_train, format_rows

    assert [auto_batch_size(g) for g in (0.2, 1.0, 3.6, 10.0, 122.0)] == [64, 64, 16, 16, 8]
    row = bench_train("smallcnn_tiny", batch_size=None, threads=1, repeats=1, min_time=0.05)
    assert row["batch_size"] == 64 and row["input"] == "1x48x48"
    assert row["train_img_per_s"] > 0 and 0 < row["train_gflop_per_img"] < 0.1
    assert row["pct_of_matmul"] > 0 and row["loader_img_per_s"] > 0
    assert "smallcnn_tiny" in format_rows([row])


def test_bench_train_flops_are_three_forward_passes_for_grouped_convs():
    """torch 2.14's counter overstates grouped-conv backward; bench_train must count 3x the forward."""
    import torch

    from ferlab.bench import bench_train
    from ferlab.models import create_model
    from ferlab.models.profile import count_flops

    row = bench_train("mobilenet_v1", batch_size=2, threads=1, repeats=1, min_time=0.01, img_size=64)
    fwd = count_flops(create_model("mobilenet_v1", img_size=64), (3, 64, 64)) / 1e9  # depthwise convs
    assert abs(row["train_gflop_per_img"] - 3 * fwd) / (3 * fwd) < 0.01
    assert torch.get_num_threads() == 1
