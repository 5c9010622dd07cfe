import hashlib
import pickle

import numpy as np
import pytest

from resnas.data import DataConfig, load_data

# A 2-stage space of tiny nets (12 architectures) for real searches that take seconds.
TINY_SPACE = """
description = "tiny test space"
[fixed]
widths = [4, 8]
stem_width = 4
[choices]
blocks = [1, 2]
k = [1, 2, 3]
kernels = [[3], [3, 3]]
"""


@pytest.fixture(scope="session")
def digits():
    return load_data(DataConfig())


@pytest.fixture(scope="session")
def tiny_space_text():
    return TINY_SPACE


@pytest.fixture
def cifar_files(monkeypatch):
    """Writes CIFAR-10/100 in torchvision's real on-disk format (python pickles) under a folder; they are not the
    published files, so torchvision is told their checksums."""
    from torchvision.datasets import CIFAR10, CIFAR100

    def write(root, hundred: bool = False, n_train: int = 40, n_test: int = 20):
        folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        key = "fine_labels" if hundred else "labels"
        classes = 100 if hundred else 10
        names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        sums = {}
        for name in names:
            n = n_test if "test" in name else n_train // (1 if hundred else 5)
            entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     key: [int(i % classes) for i in range(n)]}
            (folder / name).write_bytes(pickle.dumps(entry))
            sums[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
        meta = "meta" if hundred else "batches.meta"
        (folder / meta).write_bytes(pickle.dumps({"fine_label_names" if hundred else "label_names":
                                                  [f"c{i}" for i in range(classes)]}))
        sums[meta] = hashlib.md5((folder / meta).read_bytes()).hexdigest()
        cls = CIFAR100 if hundred else CIFAR10
        monkeypatch.setattr(cls, "train_list", [[n, sums[n]] for n, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[n, sums[n]] for n, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": sums[cls.meta["filename"]]})
        return root

    return write
