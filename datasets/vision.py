"""MNIST, Fashion-MNIST and CIFAR-10 as whole uint8 tensors.

Files are looked up under ``data.root`` in torchvision's layout (``MNIST/raw/*-ubyte[.gz]``,
``FashionMNIST/raw/...``, ``cifar-10-batches-py/``), so a folder that torchvision downloaded
into works as it is. CIFAR-10 can also be read from an image-folder copy
(``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, as a folder or as a ``.tar.gz``). When
``data.download`` is true, missing files are fetched with torchvision's own download code.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from datasets import cache, registry
from datasets.registry import DataNotFoundError, DataSplits

log = logging.getLogger(__name__)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_IMAGE_FOLDER_NAMES = ("CIFAR10-JPEG", "cifar10-images", ".")
CIFAR10_TARBALL = "cifar10_jpeg.tar.gz"


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {array.size} values, its header says {shape}")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download_mnist_like(name: str, root: Path) -> None:
    import torchvision

    dataset_class = {
        "mnist": torchvision.datasets.MNIST,
        "fashion_mnist": torchvision.datasets.FashionMNIST,
    }[name]
    for train in (True, False):
        dataset_class(str(root), train=train, download=True)


def load_mnist_like(cfg_data: DictConfig) -> DataSplits:
    name = cfg_data.name
    root = Path(cfg_data.root).expanduser()
    raw = root / TORCHVISION_FOLDER[name] / "raw"
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    missing = [stem for stem in stems if _find_idx(raw, stem) is None]
    if missing and cfg_data.download:
        log.info("downloading %s into %s", name, root)
        try:
            _download_mnist_like(name, root)
        except Exception as error:  # network errors come in many types
            raise DataNotFoundError(_missing_message(name, raw, missing, error)) from error
        missing = [stem for stem in stems if _find_idx(raw, stem) is None]
    if missing:
        raise DataNotFoundError(_missing_message(name, raw, missing, None))
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images = torch.from_numpy(read_idx(_find_idx(raw, images_stem)).copy())
        labels = torch.from_numpy(read_idx(_find_idx(raw, labels_stem)).astype(np.int64))
        splits[split] = (images, labels)
    return DataSplits(splits["train"], splits["test"], {"num_classes": 10})


def _missing_message(name: str, raw: Path, missing: list[str], error: Exception | None) -> str:
    folder = TORCHVISION_FOLDER[name]
    lines = [
        f"{name}: expected the files {', '.join(missing)} (optionally .gz) in {raw}.",
        f"Point data.root at a folder holding {folder}/raw/ (torchvision's layout), or set "
        "data.download=true on a machine with internet access so that torchvision fetches "
        "them.",
    ]
    if error is not None:
        lines.append(f"The download failed: {type(error).__name__}: {error}")
    return "\n".join(lines)


def synthetic_mnist_like(cfg_data: DictConfig, n_train: int, n_test: int, seed: int):
    """Random 28x28 uint8 images with random labels: the shapes of MNIST, none of its content."""
    generator = torch.Generator().manual_seed(seed)

    def split(n):
        images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
        return images, torch.randint(0, 10, (n,), generator=generator)

    return DataSplits(split(n_train), split(n_test), {"num_classes": 10})


def _cifar10_image_source(root: Path) -> Path | None:
    for name in CIFAR10_IMAGE_FOLDER_NAMES:
        folder = root / name
        if (folder / CIFAR10_TARBALL).is_file():
            return folder / CIFAR10_TARBALL
        if (folder / "train" / CIFAR10_CLASSES[0]).is_dir():
            return folder
    return None


def _decode_image_folder(source: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Decodes ``<split>/<class>/<file>`` images, from a folder or a tarball, in name order."""
    from PIL import Image

    members: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}

    def add(relative: str, data: bytes) -> None:
        parts = relative.strip("./").split("/")
        if len(parts) != 3 or parts[0] not in members or parts[1] not in CIFAR10_CLASSES:
            return
        members[parts[0]].append((relative, CIFAR10_CLASSES.index(parts[1]), data))

    if source.is_file():
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    add(member.name, archive.extractfile(member).read())
    else:
        for path in sorted(source.glob("*/*/*")):
            if path.is_file():
                add(path.relative_to(source).as_posix(), path.read_bytes())
    splits = {}
    for split, items in members.items():
        if not items:
            raise DataNotFoundError(f"no {split}/<class>/ images found in {source}")
        items.sort()
        images = np.stack(
            [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, _, data in items]
        )
        images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([label for _, label, _ in items], dtype=torch.int64)
        splits[split] = (images, labels)
    return splits


def _read_cifar10_batches(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    import pickle

    def read(names):
        images, labels = [], []
        for name in names:
            with open(folder / name, "rb") as file:
                entry = pickle.load(file, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"])
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

    return {
        "train": read([f"data_batch_{i}" for i in range(1, 6)]),
        "test": read(["test_batch"]),
    }


def load_cifar10(cfg_data: DictConfig) -> DataSplits:
    root = Path(cfg_data.root).expanduser()
    batches_folder = root / "cifar-10-batches-py"
    image_source = _cifar10_image_source(root)
    if not (batches_folder / "test_batch").is_file() and image_source is None:
        if cfg_data.download:
            import torchvision

            log.info("downloading CIFAR-10 into %s", root)
            try:
                torchvision.datasets.CIFAR10(str(root), train=True, download=True)
            except Exception as error:  # network errors come in many types
                raise DataNotFoundError(_cifar_missing(root, error)) from error
        else:
            raise DataNotFoundError(_cifar_missing(root, None))
    if (batches_folder / "test_batch").is_file():
        splits = _read_cifar10_batches(batches_folder)
        origin = str(batches_folder)
    else:
        key = _file_key(image_source)
        splits = cache.load_or_build(
            cfg_data, f"cifar10-images-{key}", lambda: _decode_image_folder(image_source)
        )
        origin = str(image_source)
    log.info("CIFAR-10 read from %s", origin)
    return DataSplits(splits["train"], splits["test"], {"num_classes": 10, "origin": origin})


def _file_key(path: Path) -> str:
    """A short key that changes when the source changes (its path, size and modification time)."""
    stat = path.stat()
    text = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _cifar_missing(root: Path, error: Exception | None) -> str:
    lines = [
        f"CIFAR-10: found neither {root / 'cifar-10-batches-py'}/ (torchvision's copy) nor an "
        f"image-folder copy ({' or '.join(str(root / n) for n in CIFAR10_IMAGE_FOLDER_NAMES)} "
        f"holding train/<class>/ and test/<class>/, or {CIFAR10_TARBALL}).",
        "Set data.download=true on a machine with internet access, or point data.root at one "
        "of these.",
    ]
    if error is not None:
        lines.append(f"The download failed: {type(error).__name__}: {error}")
    return "\n".join(lines)


def synthetic_cifar10(cfg_data: DictConfig, n_train: int, n_test: int, seed: int):
    """Random 32x32 RGB uint8 images with random labels: CIFAR-10's shapes only."""
    generator = torch.Generator().manual_seed(seed)

    def split(n):
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return images, torch.randint(0, 10, (n,), generator=generator)

    return DataSplits(split(n_train), split(n_test), {"num_classes": 10})


registry.register("mnist", load_mnist_like, synthetic_mnist_like)
registry.register("fashion_mnist", load_mnist_like, synthetic_mnist_like)
registry.register("cifar10", load_cifar10, synthetic_cifar10)
