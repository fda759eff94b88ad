"""A model's input description (``DataConfig``): what the transform factory needs to make its input.

Defined here, below the models, so the transforms never import the model layer; every registered model
carries one (``model_info(name).data``) and a model file records it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """How a model's input is made: ``input_size`` is (C, H, W); ``color`` is 'gray' or 'rgb';
    ``lbp=True`` appends a Local Binary Pattern channel computed from the same crop (so C = 1 or 3, +1)."""

    input_size: tuple[int, int, int] = (1, 48, 48)
    color: str = "gray"
    lbp: bool = False
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "color": self.color,
            "lbp": self.lbp,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        return cls(
            input_size=tuple(d["input_size"]),
            color=d["color"],
            lbp=bool(d.get("lbp", False)),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
        )


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
