"""Data: readers of the on-disk formats, batching on the device, per-batch transforms."""

from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datasets import DataNotFoundError, TensorBatches, build_data, load_splits
from datasets.transforms import ImageTransform, random_crop_flip
from datasets.vision import CIFAR10_CLASSES, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_mnist_tree(root, folder="MNIST", compress=True, n=(12, 5)):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    arrays = {}
    for (split, (images_name, labels_name)), count in zip(names.items(), n, strict=True):
        images = rng.integers(0, 256, (count, 28, 28))
        labels = rng.integers(0, 10, count)
        arrays[split] = (images, labels)
        for name, array in ((images_name, images), (labels_name, labels)):
            data = idx_bytes(array)
            if compress:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return arrays


def data_config(**values):
    base = {
        "name": "mnist",
        "root": "data",
        "download": False,
        "cache_dir": None,
        "batch_size": 4,
        "synthetic": False,
        "synthetic_size": [10, 5],
        "train_subset": None,
        "test_subset": None,
        "transform": {"scale": True},
    }
    base.update(values)
    return OmegaConf.create(base)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reader_reads_idx_files(tmp_path, compress):
    arrays = write_mnist_tree(tmp_path, compress=compress)
    splits = load_splits(data_config(root=str(tmp_path)))
    images, labels = splits.train
    assert images.dtype == torch.uint8 and images.shape == (12, 28, 28)
    assert torch.equal(images, torch.from_numpy(arrays["train"][0].astype(np.uint8)))
    assert torch.equal(labels, torch.from_numpy(arrays["train"][1]))
    assert splits.test[0].shape == (5, 28, 28)


def test_subsets_keep_the_first_examples(tmp_path):
    write_mnist_tree(tmp_path)
    full = load_splits(data_config(root=str(tmp_path)))
    part = load_splits(data_config(root=str(tmp_path), train_subset=3, test_subset=2))
    assert torch.equal(part.train[0], full.train[0][:3]) and len(part.test[1]) == 2
    with pytest.raises(ValueError, match="train_subset"):
        load_splits(data_config(root=str(tmp_path), train_subset=0))


def test_missing_mnist_names_the_files_and_folder(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        load_splits(data_config(root=str(tmp_path)))
    message = str(error.value)
    assert "t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "data.download" in message


def test_read_idx_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 2, 2)))[:-1])
    with pytest.raises(ValueError, match="header"):
        read_idx(path)


def test_unknown_data_set_is_named(tmp_path):
    with pytest.raises(ValueError, match="'mnits'"):
        load_splits(data_config(name="mnits"))


def write_cifar_tarball(path, per_class=2):
    rng = np.random.default_rng(0)
    from PIL import Image

    with tarfile.open(path, "w:gz") as archive:
        for split in ("train", "test"):
            for label, name in enumerate(CIFAR10_CLASSES):
                for index in range(per_class):
                    pixels = np.full((32, 32, 3), label * 20, dtype=np.uint8)
                    pixels += rng.integers(0, 3, pixels.shape, dtype=np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="PNG")
                    info = tarfile.TarInfo(f"{split}/{name}/{index:04d}.jpg")
                    info.size = len(buffer.getvalue())
                    archive.addfile(info, io.BytesIO(buffer.getvalue()))


def test_cifar_image_folder_tarball_is_read_and_cached(tmp_path):
    (tmp_path / "CIFAR10-JPEG").mkdir()
    write_cifar_tarball(tmp_path / "CIFAR10-JPEG" / "cifar10_jpeg.tar.gz")
    cfg = data_config(name="cifar10", root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    splits = load_splits(cfg)
    images, labels = splits.train
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [label for label in range(10) for _ in range(2)]
    assert (images[labels == 3].float().mean() - 60).abs() < 2
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    again = load_splits(cfg)
    assert torch.equal(again.train[0], images)


def test_missing_cifar_lists_the_accepted_layouts(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_splits(data_config(name="cifar10", root=str(tmp_path)))


def test_batches_cover_each_example_once_per_epoch():
    values = torch.arange(10)
    batches = TensorBatches((values, values * 2), batch_size=4, shuffle=True)
    generator = torch.Generator().manual_seed(0)
    seen = [batch for batch in batches.epoch(generator)]
    assert len(batches) == 3 and [len(b[0]) for b in seen] == [4, 4, 2]
    assert sorted(torch.cat([b[0] for b in seen]).tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[0] * 2) for b in seen)
    other = [batch[0] for batch in batches.epoch(generator)]
    assert not torch.equal(torch.cat(other), torch.cat([b[0] for b in seen]))
    assert len(TensorBatches((values,), batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches((values,), batch_size=0)


def test_crop_flip_moves_whole_images():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    generator = torch.Generator().manual_seed(3)
    out = random_crop_flip(images, padding=2, generator=generator)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for index in range(2):
        windows = [
            padded[index, :, top : top + 6, left : left + 6]
            for top in range(5)
            for left in range(5)
        ]
        candidates = windows + [window.flip(2) for window in windows]
        assert any(torch.equal(out[index], candidate) for candidate in candidates)
    unpadded = random_crop_flip(images, padding=0, generator=generator)
    for index in range(2):
        assert torch.equal(unpadded[index], images[index]) or torch.equal(
            unpadded[index], images[index].flip(2)
        )


def test_image_transform_scales_and_normalises():
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    transform = ImageTransform(mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    out, labels = transform((images, torch.tensor([1, 2])), None, train=False)
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]).expand(2, 3))
    assert labels.tolist() == [1, 2]
    with pytest.raises(ValueError, match="augment='rotate'"):
        ImageTransform(augment="rotate")


def test_synthetic_data_has_the_real_shapes_on_the_device():
    cfg = data_config(name="cifar10", synthetic=True, synthetic_size=[8, 4], batch_size=3)
    train, test, info = build_data(cfg, torch.device("cpu"))
    images, labels = next(iter(train))
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert info["num_classes"] == 10 and test.num_examples == 4


def test_shared_mnist_has_the_published_label_counts(shared_data):
    splits = load_splits(data_config(root=str(shared_data)))
    assert splits.train[0].shape == (60000, 28, 28)
    counts = torch.bincount(splits.train[1], minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    fashion = load_splits(data_config(name="fashion_mnist", root=str(shared_data)))
    assert torch.bincount(fashion.test[1]).tolist() == [1000] * 10


@pytest.mark.slow
def test_shared_cifar_jpeg_copy_is_read_in_class_order(shared_data, tmp_path):
    cfg = data_config(name="cifar10", root=str(shared_data), cache_dir=str(tmp_path))
    splits = load_splits(cfg)
    assert splits.train[0].shape == (50000, 3, 32, 32)
    assert torch.bincount(splits.test[1]).tolist() == [1000] * 10
    mean = splits.train[0].float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4912, 0.4821, 0.4465]), atol=2e-3)
