"""Every model family learns: a few optimiser steps on real FER2013 faces lower its loss (size variants: families.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ferlab
from families import representatives
from ferlab.transforms import create_transform


@pytest.mark.parametrize("name", representatives())  # size variants: tests/families.py
def test_loss_decreases_on_real_faces(name, fer2013):
    info = ferlab.model_info(name)
    size = info.test_size or info.data.input_size[1]
    torch.manual_seed(0)
    model = ferlab.create_model(name, num_classes=7, img_size=size)
    sp = fer2013["train"]
    idx = [int(i) for c in range(7) for i in (sp.labels == c).nonzero()[0][:2]]  # two faces of every class
    x = create_transform(model.data_config)(sp.images[idx])
    y = torch.as_tensor(sp.labels[idx])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    losses = []
    for step in range(12):
        torch.manual_seed(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # the training loss on a fixed batch of real faces falls (the mean of the last three steps against the first)
    assert sum(losses[-3:]) / 3 < losses[0], f"{name}: losses {[round(v, 3) for v in losses]}"
