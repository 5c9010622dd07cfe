import numpy as np
import pytest
import torch
from PIL import Image

from resnas.data import Augment, DataConfig, FolderData, augment_batch, load_data
from resnas.errors import UserError


def test_digits_split_sizes_and_stratification(digits):
    sizes = [len(digits.train), len(digits.val), len(digits.test)]
    assert sum(sizes) == 1797 and sizes == [1221, 216, 360]
    assert digits.in_channels == 1 and digits.image_size == 8 and digits.num_classes == 10
    for split in (digits.train, digits.val, digits.test):
        assert set(split.y.tolist()) == set(range(10))  # every class in every split
    assert abs(digits.train.x.mean().item()) < 1e-4  # normalised with training statistics


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


def test_validation_and_test_are_disjoint_and_test_is_fixed(digits):
    other = load_data(DataConfig(split_seed=5, val_fraction=0.3))
    assert len(other.val) != len(digits.val)
    # the test split is the same images whatever the validation split (normalisation aside: compare labels+order)
    assert torch.equal(other.test.y, digits.test.y)
    raw = load_data(DataConfig())
    assert not (_rows(raw.val.x) & _rows(raw.test.x)) or len(_rows(raw.val.x) & _rows(raw.test.x)) < 3
    assert not (_rows(raw.train.x) & _rows(raw.val.x)) or len(_rows(raw.train.x) & _rows(raw.val.x)) < 3


def test_crop_is_a_shift_with_zero_border():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(1, 2 * 1 * 5 * 5 + 1, dtype=torch.float).reshape(2, 1, 5, 5)
    y = augment_batch(x, Augment(crop_padding=1), g)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 5, dx:dx + 5] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(y[i], w) for w in windows)


def test_flip_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 4, 4)
    y = augment_batch(x, Augment(flip=True), g)
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(2)) for i in range(400)])
    same = torch.tensor([torch.equal(y[i], x[i]) for i in range(400)])
    assert bool((flipped | same).all()) and 120 < int(flipped.sum()) < 280


def test_train_batches_cover_an_epoch_on_device(digits):
    g = torch.Generator().manual_seed(0)
    batches = list(digits.train_batches(100, g))
    assert len(batches) == 12 and all(x.shape == (100, 1, 8, 8) for x, _ in batches)
    assert all(x.device == digits.device for x, _ in batches)
    labels = torch.cat([y for _, y in batches])
    assert len(labels) == 1200


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_through_torchvisions_loader(tmp_path, cifar_files, hundred):
    cifar_files(tmp_path, hundred, n_train=200 if hundred else 40)
    data = load_data(DataConfig(dataset="cifar100" if hundred else "cifar10", data_dir=str(tmp_path),
                                val_fraction=0.5 if hundred else 0.25))
    assert data.train.x.shape[1:] == (3, 32, 32) and data.num_classes == (100 if hundred else 10)
    assert len(data.train) + len(data.val) == (200 if hundred else 40) and len(data.test) == 20
    assert data.augment.flip and data.augment.crop_padding == 4


def test_cifar_missing_offline_says_where_and_how(tmp_path):
    with pytest.raises(UserError) as err:
        load_data(DataConfig(dataset="cifar10", data_dir=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg and "\n" not in msg


def _write_pngs(root, classes=("cat", "dog", "eel"), per_class=10, size=12):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_streams_resized_batches(tmp_path):
    _write_pngs(tmp_path / "imgs")
    data = load_data(DataConfig(dataset=f"imagefolder:{tmp_path / 'imgs'}", resize=16, val_fraction=0.25))
    assert isinstance(data, FolderData)
    assert data.num_classes == 3 and data.image_size == 16 and data.in_channels == 3
    assert data.split_size("test") == 6 and data.split_size("train") + data.split_size("val") == 24
    x, y = next(iter(data.train_batches(4, torch.Generator().manual_seed(0))))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    assert sum(len(y) for _, y in data.eval_batches("val", 100)) == data.split_size("val")


def test_imagefolder_with_train_and_test_folders(tmp_path):
    _write_pngs(tmp_path / "train", per_class=8)
    _write_pngs(tmp_path / "test", per_class=2)
    data = load_data(DataConfig(dataset=f"imagefolder:{tmp_path}", resize=8))
    assert data.split_size("test") == 6 and data.split_size("train") + data.split_size("val") == 24


@pytest.mark.parametrize("name, words", [("mnist", "unknown dataset 'mnist'"),
                                         ("imagefolder:/no/such/dir", "is not a directory")])
def test_bad_dataset_names(name, words):
    with pytest.raises(UserError, match=words):
        load_data(DataConfig(dataset=name))
