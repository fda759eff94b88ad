"""The shared transform factory: determinism, shapes, dtypes, ranges, and the train/eval contract."""

import numpy as np
import pytest
import torch

from ferlab.errors import ConfigError
from ferlab.models import DataConfig
from ferlab.transforms import AugmentConfig, create_transform, erase_mask, to_tensor_batch

GRAY = DataConfig((1, 48, 48), "gray", False, (0.5,), (0.5,))
RGB64 = DataConfig((3, 64, 64), "rgb", False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LBP = DataConfig((4, 48, 48), "rgb", True, (0.485, 0.456, 0.406, 0.5), (0.229, 0.224, 0.225, 0.5))


@pytest.fixture
def faces(fer2013):
    return fer2013["test"].images[:16]


def test_eval_is_deterministic_normalisation(faces):
    tf = create_transform(GRAY)
    x = tf(faces)
    assert x.shape == (16, 1, 48, 48) and x.dtype == torch.float32
    expected = (torch.from_numpy(faces).float()[:, None] / 255 - 0.5) / 0.5
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(tf(faces), x)
    assert x.min() >= -1 and x.max() <= 1


def test_train_is_reproducible_under_seed(faces):
    tf = create_transform(GRAY, is_training=True)
    a = tf(faces, generator=torch.Generator().manual_seed(3))
    b = tf(faces, generator=torch.Generator().manual_seed(3))
    c = tf(faces, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (16, 1, 48, 48) and a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6


def test_no_augmentation_equals_eval(faces):
    tr = create_transform(GRAY, is_training=True, augment=AugmentConfig.none())
    torch.testing.assert_close(
        tr(faces, generator=torch.Generator().manual_seed(0)),
        create_transform(GRAY)(faces),
        atol=1e-4,
        rtol=0,
    )


def test_flip_only_flips(faces):
    a = AugmentConfig.none()
    a.hflip = 1.0
    x = create_transform(GRAY, True, a)(faces, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, create_transform(GRAY)(faces).flip(-1), atol=1e-4, rtol=0)


def test_color_resize_and_lbp(faces):
    x = create_transform(RGB64)(faces)
    assert x.shape == (16, 3, 64, 64)
    torch.testing.assert_close(x[:, 0] * 0.229 + 0.485, x[:, 1] * 0.224 + 0.456)  # gray replicated
    rgb = np.stack([faces] * 3, -1)
    torch.testing.assert_close(create_transform(GRAY)(rgb), create_transform(GRAY)(faces), atol=1e-4, rtol=0)
    y = create_transform(LBP)(faces)
    assert y.shape == (16, 4, 48, 48)
    from ferlab.faces.photometric import lbp_image

    lbp0 = torch.from_numpy(lbp_image(faces[0]).astype(np.float32))
    torch.testing.assert_close(y[0, 3] * 0.5 * 255 + 0.5 * 255, lbp0, atol=1e-3, rtol=0)


def test_random_erasing_area():
    g = torch.Generator().manual_seed(0)
    m = erase_mask(2000, 48, 48, p=1.0, area=(0.1, 0.1), g=g)
    frac = m.float().mean((1, 2, 3))
    assert frac.mean().item() == pytest.approx(0.1, abs=0.02)
    assert (erase_mask(100, 48, 48, p=0.0, area=(0.1, 0.2), g=g).sum() == 0).item()


def test_bad_inputs():
    with pytest.raises(ConfigError, match="uint8"):
        create_transform(GRAY)(torch.zeros(2, 1, 48, 48))
    with pytest.raises(ConfigError, match="unknown augmentation"):
        AugmentConfig.from_dict({"hflip": 0.5, "rotation": 3})
    with pytest.raises(ConfigError, match="shape"):
        to_tensor_batch(np.zeros((1, 2, 3, 4, 5), np.uint8))
