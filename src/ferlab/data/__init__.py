"""Datasets: readers for FER2013, FER+, RAF-DB, AffectNet, CK+ and ImageFolders, splits, balance, caches."""

from .base import FERDataset, Split, resolve_root
from .registry import DATASETS, find_datasets, load_dataset

__all__ = ["DATASETS", "FERDataset", "Split", "find_datasets", "load_dataset", "resolve_root"]
