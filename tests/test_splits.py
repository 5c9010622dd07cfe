"""resnas.splits makes the splits scikit-learn made (every recorded result was trained and tested on them) without
importing it: the same indices as `train_test_split(..., stratify=labels)` on labels of every shape a dataset
has, the same digits arrays as `load_digits`, and the digits partition itself pinned by its digest."""

import hashlib

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split

from resnas import splits
from resnas.errors import UserError

DIGITS_SPLIT_SHA256 = "803844cda708aec60645f85308d3e6cc3cf84d6e5e531ec484b73e25a61c0164"  # resnas 0.1 and 0.2


def _sklearn(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    keep, held = train_test_split(np.arange(len(labels)), test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(keep), np.sort(held)


def _labels(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "balanced":  # ties everywhere in the per-class remainders
        return np.repeat(np.arange(10), 30)
    if kind == "skewed":
        return rng.choice(7, size=523, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])
    if kind == "two-per-class":
        return rng.permutation(np.repeat(np.arange(5), 2 + np.arange(5)))
    return rng.integers(0, 100, size=5000)  # cifar100-like


@pytest.mark.parametrize("kind", ["balanced", "skewed", "two-per-class", "many"])
@pytest.mark.parametrize("fraction", [0.15, 0.2, 0.3, 0.5])
def test_same_indices_as_scikit_learn(kind, fraction):
    rng = np.random.default_rng(len(kind))
    labels = _labels(kind, rng)
    for seed in (0, 1, 5, 123):
        try:
            expected = _sklearn(labels, fraction, seed)
        except ValueError:  # too few of a class for this fraction: ours refuses as well
            with pytest.raises(UserError, match="classes on both sides"):
                splits.stratified_split(labels, fraction, seed)
            continue
        got = splits.stratified_split(labels, fraction, seed)
        assert all(np.array_equal(g, e) and g.dtype == e.dtype for g, e in zip(got, expected, strict=True))


def test_labels_of_any_integer_type_and_order():
    labels = np.random.default_rng(3).integers(0, 4, size=200).astype(np.int32) * 7 + 3
    assert all(np.array_equal(a, b) for a, b in zip(splits.stratified_split(labels, 0.25, 2),
                                                    _sklearn(labels, 0.25, 2), strict=True))


def test_digits_arrays_are_scikit_learns():
    images, labels = splits.load_digits()
    bunch = sklearn_digits()
    assert images.dtype == bunch.images.dtype and np.array_equal(images, bunch.images)
    assert labels.dtype == bunch.target.dtype and np.array_equal(labels, bunch.target)


def test_digits_without_the_data_file_ask_scikit_learn(monkeypatch):
    monkeypatch.setattr(splits, "digits_file", lambda: None)
    images, labels = splits.load_digits()
    assert images.shape == (1797, 8, 8) and np.array_equal(labels, sklearn_digits().target)


def test_digits_partition_is_the_recorded_one():
    _, labels = splits.load_digits()
    train, test = splits.stratified_split(labels.astype(np.int64), 0.2, seed=0)
    fit, val = splits.stratified_split(labels[train].astype(np.int64), 0.15, seed=0)
    digest = hashlib.sha256(b"".join(a.astype(np.int64).tobytes() for a in (train, test, fit, val))).hexdigest()
    assert digest == DIGITS_SPLIT_SHA256 and [len(a) for a in (train, test, fit, val)] == [1437, 360, 1221, 216]
