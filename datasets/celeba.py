"""CelebA aligned face images (Liu et al. 2015) as one uint8 tensor per split, labels dropped.

Images are read from a folder of aligned JPEGs, ``img_align_celeba/``, looked up as
``<root>/celeba/img_align_celeba`` (where torchvision's ``CelebA`` puts it),
``<root>/CelebA/img_align_celeba`` and ``<root>/img_align_celeba``. The split follows
``list_eval_partition.txt`` beside the folder when it is there, else the official partition by
file number (000001-162770 train, 162771-182637 validation, 182638-202599 test); the
validation images are not used. When no folder is found and ``data.download`` is true,
torchvision's ``CelebA`` downloads the data set from Google Drive (which often refuses
automated downloads; the error message then says how to provide the folder yourself).

Each image is cropped to its central ``data.crop`` x ``data.crop`` square (140 in the WAE
paper, for 178x218 aligned images) and resized to ``data.image_size`` (64) with a Lanczos
filter, as the WAE authors' code does. The result is cached once as a uint8 tensor
(N, 3, size, size): about 2.5 GB for the whole data set at 64x64.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from datasets import cache, registry
from datasets.registry import DataNotFoundError, DataSplits

log = logging.getLogger(__name__)

IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
SEARCH_FOLDERS = ("celeba", "CelebA", ".")
# The official partition by image number: the last image of the training and validation parts.
LAST_TRAIN, LAST_VALID = 162770, 182637
PARTITION_IDS = {"train": 0, "test": 2}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_folder(root: Path) -> Path | None:
    for name in SEARCH_FOLDERS:
        folder = root / name / IMAGE_FOLDER
        if folder.is_dir():
            return folder
    return None


def _partition_by_number(name: str) -> int:
    stem = Path(name).stem
    if not stem.isdigit():
        raise ValueError(
            f"CelebA image {name!r} is not numbered like 000001.jpg and no {PARTITION_FILE} "
            "says which split it belongs to; add that file beside the image folder"
        )
    number = int(stem)
    return 0 if number <= LAST_TRAIN else 1 if number <= LAST_VALID else 2


def partition(folder: Path, names: list[str]) -> dict[str, int]:
    """Split id (0 train, 1 validation, 2 test) of each image file name."""
    partition_file = folder.parent / PARTITION_FILE
    if partition_file.is_file():
        listed = {}
        for line in partition_file.read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1].isdigit():
                listed[fields[0]] = int(fields[1])
        missing = [name for name in names if name not in listed]
        if missing:
            raise ValueError(
                f"{partition_file} does not list {len(missing)} images of {folder}, "
                f"e.g. {missing[:3]}"
            )
        return {name: listed[name] for name in names}
    return {name: _partition_by_number(name) for name in names}


def load_image(path: Path, crop: int, size: int) -> np.ndarray:
    """Central ``crop`` x ``crop`` square of an image, resized to ``size`` x ``size``, as
    uint8 (3, size, size)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        if crop > min(width, height):
            raise ValueError(f"data.crop={crop} exceeds the size {width}x{height} of {path}")
        left, top = (width - crop) // 2, (height - crop) // 2
        image = image.crop((left, top, left + crop, top + crop))
        image = image.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def decode_folder(folder: Path, crop: int, size: int) -> dict[str, torch.Tensor]:
    """Decodes the training and test images of an ``img_align_celeba`` folder in name order."""
    names = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not names:
        raise DataNotFoundError(f"CelebA: no images ({'/'.join(IMAGE_SUFFIXES)}) in {folder}")
    split_of = partition(folder, names)
    workers = min(8, os.cpu_count() or 1)
    result = {}
    for split, split_id in PARTITION_IDS.items():
        chosen = [name for name in names if split_of[name] == split_id]
        if not chosen:
            raise DataNotFoundError(
                f"CelebA: no {split} images in {folder} (split by {PARTITION_FILE} or, without "
                f"it, by number: up to {LAST_TRAIN:06d} train, from {LAST_VALID + 1:06d} test)"
            )
        log.info("decoding %d %s images of %s", len(chosen), split, folder)
        with ThreadPoolExecutor(workers) as pool:
            arrays = list(pool.map(lambda name: load_image(folder / name, crop, size), chosen))
        result[split] = torch.from_numpy(np.stack(arrays))
    return result


def _missing_message(root: Path, error: Exception | None) -> str:
    folders = ", ".join(str(root / name / IMAGE_FOLDER) for name in SEARCH_FOLDERS)
    lines = [
        f"CelebA: no folder of aligned images found (looked for {folders}).",
        "Either set data.download=true on a machine with internet access, so that "
        "torchvision downloads CelebA (its Google-Drive download often fails with a quota "
        "error), or put the aligned images you already have (img_align_celeba.zip from the "
        f"CelebA page, unpacked) in {root / IMAGE_FOLDER}/, optionally with "
        f"{PARTITION_FILE} beside it, and point data.root at {root}.",
    ]
    if error is not None:
        lines.append(f"The download failed: {type(error).__name__}: {error}")
    return "\n".join(lines)


def _folder_key(folder: Path, crop: int, size: int) -> str:
    partition_file = folder.parent / PARTITION_FILE
    parts = [str(folder.resolve()), str(folder.stat().st_mtime_ns), f"{crop}-{size}"]
    if partition_file.is_file():
        parts.append(str(partition_file.stat().st_mtime_ns))
    return hashlib.sha1(":".join(parts).encode()).hexdigest()[:12]


def _check_sizes(cfg_data: DictConfig) -> tuple[int, int]:
    crop, size = cfg_data.get("crop"), cfg_data.get("image_size")
    for key, value in (("crop", crop), ("image_size", size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"data.{key}={value!r}; expected a positive integer")
    return crop, size


def load_celeba(cfg_data: DictConfig) -> DataSplits:
    crop, size = _check_sizes(cfg_data)
    root = Path(cfg_data.root).expanduser()
    folder = find_folder(root)
    if folder is None:
        if not cfg_data.get("download", False):
            raise DataNotFoundError(_missing_message(root, None))
        import torchvision

        log.info("downloading CelebA into %s", root)
        try:
            torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)
        except Exception as error:  # network and quota errors come in many types
            raise DataNotFoundError(_missing_message(root, error)) from error
        folder = find_folder(root)
        if folder is None:
            raise DataNotFoundError(_missing_message(root, None))
    images = cache.load_or_build(
        cfg_data,
        f"celeba-{_folder_key(folder, crop, size)}",
        lambda: decode_folder(folder, crop, size),
    )
    log.info("CelebA read from %s", folder)
    return DataSplits((images["train"],), (images["test"],), {"origin": str(folder)})


def synthetic_celeba(cfg_data: DictConfig, n_train: int, n_test: int, seed: int) -> DataSplits:
    """Random uint8 RGB images of the configured size: CelebA's shapes, none of its content."""
    _, size = _check_sizes(cfg_data)
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor]:
        return (torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator),)

    return DataSplits(split(n_train), split(n_test))


registry.register("celeba", load_celeba, synthetic_celeba)
