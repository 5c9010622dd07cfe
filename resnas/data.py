"""Datasets with a fixed, seeded train / validation / test split.

Small sets (digits, CIFAR, synthetic) live as whole normalised tensors on the training device and are augmented
there in batches (random crop with zero padding, horizontal flip), so a training step does no per-sample Python
work. ImageFolder sets stream through a DataLoader with workers.

torchvision is imported inside the functions that use it: it costs more start-up time than torch itself, and only
CIFAR and ImageFolder need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from .errors import UserError
from .splits import load_digits, stratified_split

DATASETS = "digits, cifar10, cifar100, imagefolder:PATH, synthetic"
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DataConfig:
    """Everything needed to rebuild the same splits later (it is stored in every checkpoint)."""

    dataset: str = "digits"
    data_dir: str | None = None  # where CIFAR files are (or go, with download)
    download: bool = False
    val_fraction: float = 0.15  # of the training split, carved out for model selection
    split_seed: int = 0
    resize: int | None = None  # imagefolder: square side images are resized to
    synthetic_shape: tuple[int, int, int] = (3, 32, 32)  # synthetic: C, H, W
    synthetic_size: int = 2048  # synthetic: training images (val and test get a quarter each)


@dataclass(frozen=True)
class Augment:
    crop_padding: int = 0  # random crop of the original size from the zero-padded image
    flip: bool = False  # random horizontal flip


@dataclass
class TensorSplit:
    x: torch.Tensor  # N, C, H, W, normalised float32
    y: torch.Tensor  # N, int64

    def __len__(self) -> int:
        return len(self.y)


class TensorData:
    """A dataset held whole on one device."""

    def __init__(self, name: str, train: TensorSplit, val: TensorSplit, test: TensorSplit, num_classes: int,
                 augment: Augment) -> None:
        self.name, self.train, self.val, self.test = name, train, val, test
        self.num_classes, self.augment = num_classes, augment
        self.in_channels, self.image_size = train.x.shape[1], train.x.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    def to(self, device: torch.device | str) -> TensorData:
        move = lambda s: TensorSplit(s.x.to(device), s.y.to(device))  # noqa: E731
        return TensorData(self.name, move(self.train), move(self.val), move(self.test), self.num_classes, self.augment)

    def split(self, name: str) -> TensorSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def split_size(self, split: str) -> int:
        return len(self.split(split))

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One shuffled, augmented epoch. A last partial batch is dropped (BatchNorm needs more than one image)."""
        n = len(self.train)
        order = torch.randperm(n, device=self.device, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = order[start:start + batch_size]
            yield augment_batch(self.train.x[idx], self.augment, generator), self.train.y[idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        s = self.split(split)
        for start in range(0, len(s), batch_size):
            yield s.x[start:start + batch_size], s.y[start:start + batch_size]

    def calibration_batches(self, batch_size: int, n_batches: int, seed: int = 0) -> list[Batch]:
        """Un-augmented training batches, e.g. for BatchNorm recalibration or importance estimates."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        order = torch.randperm(len(self.train), device=self.device, generator=g)
        idx = [order[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]
        return [(self.train.x[i], self.train.y[i]) for i in idx if len(i) > 1]


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random crop and flip for a whole batch with one gather, on whatever device the batch is on."""
    b, c, h, w = x.shape
    p = augment.crop_padding
    if p:
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1), device=x.device, generator=generator)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if augment.flip:
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


# ---- splits ---------------------------------------------------------------------------------------------

def _tensor_data(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 num_classes: int, config: DataConfig, augment: Augment) -> TensorData:
    """uint8/float NCHW arrays -> normalised splits; statistics come from the training part only."""
    fit, val = stratified_split(y_train, config.val_fraction, config.split_seed)
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    mean = xt[fit].mean(dim=(0, 2, 3), keepdim=True)
    std = xt[fit].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def split(x: torch.Tensor, y: np.ndarray) -> TensorSplit:
        return TensorSplit(((x - mean) / std).contiguous(), torch.as_tensor(y, dtype=torch.int64))

    return TensorData(name, split(xt[fit], y_train[fit]), split(xt[val], y_train[val]),
                      split(torch.as_tensor(x_test, dtype=torch.float32), y_test), num_classes, augment)


def _digits(config: DataConfig) -> TensorData:
    images, labels = load_digits()
    x = images.astype(np.float32)[:, None]  # N, 1, 8, 8 with values 0..16
    y = labels.astype(np.int64)
    train, test = stratified_split(y, 0.2, seed=0)  # the test split never moves, whatever the val seed
    return _tensor_data("digits", x[train], y[train], x[test], y[test], 10, config, Augment(crop_padding=1))


def _cifar(config: DataConfig, hundred: bool) -> TensorData:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, folder = (CIFAR100, "cifar-100-python") if hundred else (CIFAR10, "cifar-10-batches-py")
    name = "cifar100" if hundred else "cifar10"
    root = Path(config.data_dir or os.environ.get("RESNAS_DATA", "data")).expanduser()
    try:
        train = cls(str(root), train=True, download=config.download)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as e:
        how = "pass --download to fetch them" if not config.download else f"the download failed ({e})"
        raise UserError(f"{name}: no complete dataset under {root / folder}; {how}, or give --data-dir DIR where "
                        f"DIR/{folder} holds the python-format batches") from None
    except OSError as e:
        raise UserError(f"{name}: cannot fetch or read the dataset under {root} ({e}); without a network, "
                        f"copy {folder} there and give --data-dir") from None

    def chw(ds) -> tuple[np.ndarray, np.ndarray]:
        return ds.data.transpose(0, 3, 1, 2), np.asarray(ds.targets, dtype=np.int64)

    x_train, y_train = chw(train)
    x_test, y_test = chw(test)
    return _tensor_data(name, x_train, y_train, x_test, y_test, 100 if hundred else 10, config,
                        Augment(crop_padding=4, flip=True))


def _synthetic(config: DataConfig) -> TensorData:
    """Random images and labels: for timing code paths, never for accuracy."""
    g = np.random.default_rng(config.split_seed)
    n = config.synthetic_size + config.synthetic_size // 4
    x = g.integers(0, 256, size=(n, *config.synthetic_shape), dtype=np.uint8)
    y = g.integers(0, 10, size=n).astype(np.int64)
    cut = config.synthetic_size
    return _tensor_data("synthetic", x[:cut], y[:cut], x[cut:], y[cut:], 10, config,
                        Augment(crop_padding=4 if config.synthetic_shape[-1] >= 16 else 0, flip=True))


FOLDER_SIDE = 32  # imagefolder images are resized to this side unless --resize says otherwise


def image_size(config: DataConfig) -> int:
    """The side of the images `config` loads, known without loading them."""
    if config.dataset.startswith("imagefolder:"):
        return config.resize or FOLDER_SIDE
    return {"digits": 8, "synthetic": config.synthetic_shape[-1]}.get(config.dataset, 32)  # CIFAR: 32


def load_data(config: DataConfig, device: torch.device | str = "cpu") -> Data:
    """Load a dataset by name (see DATASETS) and place it for training on `device`."""
    if not 0.0 < config.val_fraction < 1.0:
        raise UserError(f"val fraction must be in (0, 1), got {config.val_fraction}")
    name = config.dataset
    if name == "digits":
        data = _digits(config)
    elif name in ("cifar10", "cifar100"):
        data = _cifar(config, hundred=name == "cifar100")
    elif name == "synthetic":
        data = _synthetic(config)
    elif name.startswith("imagefolder:"):
        return FolderData(Path(name.split(":", 1)[1]).expanduser(), config, device)
    else:
        raise UserError(f"unknown dataset {name!r}; datasets are {DATASETS}")
    return data.to(device)


# ---- ImageFolder: streamed through a DataLoader -----------------------------------------------------------

class FolderData:
    """A user's images in torchvision's ImageFolder layout: ROOT/CLASS/*.png, or ROOT/train/CLASS and
    ROOT/test/CLASS. Without a test folder 20% of the images are held out for test (stratified, fixed seed)."""

    def __init__(self, root: Path, config: DataConfig, device: torch.device | str) -> None:
        from torchvision import transforms
        from torchvision.datasets import ImageFolder

        if not root.is_dir():
            raise UserError(f"imagefolder: {root} is not a directory; expected ROOT/CLASS/image files")
        size = image_size(config)
        self.name, self.device, self.image_size, self.in_channels = f"imagefolder:{root}", torch.device(device), size, 3
        self.augment = Augment(crop_padding=size // 8, flip=True)
        base = [transforms.Resize((size, size)), transforms.ToTensor()]
        split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
        try:
            plain = ImageFolder(str(root / "train" if split_dirs else root), transforms.Compose(base))
            test_set = ImageFolder(str(root / "test"), transforms.Compose(base)) if split_dirs else None
        except (FileNotFoundError, OSError) as e:
            raise UserError(f"imagefolder: cannot read {root}: {e}") from None
        targets = np.asarray(plain.targets)
        if test_set is None:
            rest, test_idx = stratified_split(targets, 0.2, seed=0)
            test_set = Subset(plain, test_idx.tolist())
        else:
            rest = np.arange(len(targets))
        fit_pos, val_pos = stratified_split(targets[rest], config.val_fraction, config.split_seed)
        fit, val = rest[fit_pos], rest[val_pos]
        self.num_classes = len(plain.classes)
        # normalisation statistics from (up to 256 of) the training images only
        sample = torch.stack([plain[int(i)][0] for i in fit[:256]])
        norm = transforms.Normalize(sample.mean(dim=(0, 2, 3)).tolist(),
                                    sample.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())
        train_tf = transforms.Compose([*base, transforms.RandomCrop(size, padding=self.augment.crop_padding),
                                       transforms.RandomHorizontalFlip(), norm])
        eval_tf = transforms.Compose([*base, norm])
        self._train = Subset(ImageFolder(plain.root, train_tf), fit.tolist())
        self._splits = {"train": Subset(ImageFolder(plain.root, eval_tf), fit.tolist()),
                        "val": Subset(ImageFolder(plain.root, eval_tf), val.tolist()),
                        "test": _with_transform(test_set, eval_tf)}
        self.workers = min(4, os.cpu_count() or 1)

    def _loader(self, dataset, batch_size: int, **kw) -> Iterator[Batch]:
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda", **kw)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def split_size(self, split: str) -> int:
        return len(self._train) if split == "train" else len(self._splits[split])

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        return self._loader(self._train, batch_size, shuffle=True, drop_last=len(self._train) > batch_size,
                            generator=torch.Generator().manual_seed(seed))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        return self._loader(self._splits[split], batch_size)

    def calibration_batches(self, batch_size: int, n_batches: int, seed: int = 0) -> list[Batch]:
        g = np.random.default_rng(seed)
        take = g.permutation(len(self._splits["train"]))[: batch_size * n_batches].tolist()
        return list(self._loader(Subset(self._splits["train"], take), batch_size))


def _with_transform(dataset, transform):
    """The same images as `dataset` (an ImageFolder or a Subset of one) seen through another transform."""
    from torchvision.datasets import ImageFolder

    if isinstance(dataset, Subset):
        return Subset(ImageFolder(dataset.dataset.root, transform), dataset.indices)
    return ImageFolder(dataset.root, transform)


Data = TensorData | FolderData
