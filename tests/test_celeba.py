"""CelebA from a folder of aligned images: split, crop, resize, cache, and the error message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datasets import DataNotFoundError, celeba, load_splits

# Solid colours, so that the crop and resize keep them (up to JPEG rounding).
IMAGES = {
    "000001.jpg": (200, 30, 30),
    "000002.jpg": (30, 200, 30),
    "162771.jpg": (0, 0, 0),  # validation: not used
    "182638.jpg": (30, 30, 200),
    "202599.jpg": (220, 220, 220),
}


def write_images(folder: Path, names=IMAGES) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        # The aligned CelebA size, 178 wide and 218 high.
        Image.new("RGB", (178, 218), IMAGES[name]).save(folder / name, quality=95)
    return folder


def data_config(root: Path, cache: Path, **overrides):
    spec = {
        "name": "celeba",
        "root": str(root),
        "download": False,
        "cache_dir": str(cache),
        "crop": 140,
        "image_size": 64,
        "synthetic": False,
        "synthetic_size": [4, 2],
    }
    spec.update(overrides)
    return OmegaConf.create(spec)


def mean_colour(images: torch.Tensor) -> np.ndarray:
    return images.float().mean(dim=(2, 3)).numpy()


def test_folder_is_split_by_number_cropped_and_resized(tmp_path):
    write_images(tmp_path / "data" / "img_align_celeba")
    splits = load_splits(data_config(tmp_path / "data", tmp_path / "cache"))
    (train,), (test,) = splits.train, splits.test
    assert train.shape == (2, 3, 64, 64) and train.dtype == torch.uint8
    assert test.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(mean_colour(train), [[200, 30, 30], [30, 200, 30]], atol=3)
    np.testing.assert_allclose(mean_colour(test), [[30, 30, 200], [220, 220, 220]], atol=3)
    assert len(list((tmp_path / "cache").glob("celeba-*.pt"))) == 1
    again = load_splits(data_config(tmp_path / "data", tmp_path / "cache"))
    assert torch.equal(again.train[0], train)


def test_partition_file_and_torchvision_layout(tmp_path):
    folder = write_images(tmp_path / "data" / "celeba" / "img_align_celeba")
    (folder.parent / "list_eval_partition.txt").write_text(
        "000001.jpg 2\n000002.jpg 0\n162771.jpg 0\n182638.jpg 1\n202599.jpg 0\n"
    )
    splits = load_splits(data_config(tmp_path / "data", tmp_path / "cache"))
    assert len(splits.train[0]) == 3 and len(splits.test[0]) == 1
    np.testing.assert_allclose(mean_colour(splits.test[0]), [[200, 30, 30]], atol=3)


def test_crop_takes_the_centre(tmp_path):
    from PIL import Image

    folder = tmp_path / "data" / "img_align_celeba"
    folder.mkdir(parents=True)
    image = Image.new("RGB", (178, 218), (0, 0, 0))
    image.paste((255, 255, 255), (19, 39, 159, 179))  # exactly the central 140x140 square
    image.save(folder / "000001.png")
    array = celeba.load_image(folder / "000001.png", crop=140, size=64)
    assert array.shape == (3, 64, 64)
    assert array.min() > 245  # nothing of the black border survives the crop


def test_missing_images_name_both_ways_to_provide_them(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        load_splits(data_config(tmp_path, tmp_path / "cache"))
    message = str(error.value)
    assert "data.download=true" in message
    assert str(tmp_path / "img_align_celeba") in message
    assert "img_align_celeba.zip" in message


def test_a_folder_without_test_images_is_an_error(tmp_path):
    write_images(tmp_path / "img_align_celeba", ["000001.jpg", "000002.jpg"])
    with pytest.raises(DataNotFoundError, match="no test images"):
        load_splits(data_config(tmp_path, tmp_path / "cache"))


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="data.crop=0"):
        load_splits(data_config(tmp_path, tmp_path / "cache", crop=0))


def test_synthetic_celeba_has_the_shapes(tmp_path):
    splits = load_splits(data_config(tmp_path / "nowhere", tmp_path / "cache", synthetic=True))
    assert splits.train[0].shape == (4, 3, 64, 64) and splits.test[0].shape == (2, 3, 64, 64)
    assert splits.train[0].dtype == torch.uint8
