"""The stratified split every dataset's train/val/test partition is made with, and the digits images, without
importing scikit-learn.

`stratified_split` is scikit-learn's `train_test_split(idx, test_size=f, random_state=seed, stratify=labels)`
(StratifiedShuffleSplit with `_approximate_mode`, scikit-learn 1.x), step for step on the same NumPy RandomState, so
the splits every recorded result was made on stay bit-identical (tests/test_splits.py compares the two). Importing
scikit-learn costs a worker process more start-up time than the rest of resnas does on top of torch, for one
function of thirty lines and one CSV file.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np

from .errors import UserError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the kept part and of the held-out `fraction` (rounded up), each class in proportion."""
    n = len(labels)
    n_held = math.ceil(fraction * n)
    n_keep = n - n_held
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or n_keep < len(classes) or n_held < len(classes):
        raise UserError(f"cannot hold out {fraction:g} of {n} images with each of the {len(classes)} classes on both "
                        f"sides (the smallest class has {counts.min()}); give each class more images, or hold out a "
                        "share that leaves at least one of each class on either side")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_keep, rng)
    t_i = _approximate_mode(counts - n_i, n_held, rng)
    keep, held = [], []
    for i in range(len(classes)):
        shuffled = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        keep.extend(shuffled[:n_i[i]])
        held.extend(shuffled[n_i[i]:n_i[i] + t_i[i]])
    # scikit-learn shuffles both lists once more with the same generator; sorting makes that moot
    return np.sort(np.asarray(keep, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Draws per class closest to proportional; ties in the remainder broken at random (scikit-learn's order)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)


def digits_file() -> Path | None:
    """scikit-learn's copy of the UCI digits (1,797 8x8 images), found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(root) / "datasets" / "data" / "digits.csv.gz").is_file():
            return path
    return None


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as scikit-learn's `load_digits` gives them: images (N, 8, 8) float64 of 0..16, labels (N,) int."""
    path = digits_file()
    if path is None:  # a scikit-learn that keeps the file elsewhere: ask it
        from sklearn.datasets import load_digits as sklearn_digits  # only here: see the module docstring

        bunch = sklearn_digits()
        return bunch.images, bunch.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)
