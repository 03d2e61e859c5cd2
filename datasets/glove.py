"""Pretrained GloVe word vectors (Pennington et al. 2014) for a vocabulary.

``data.embedding.pretrained`` names the vectors: a GloVe name such as ``glove.6B.100d`` (the
LOSSGRAD paper's, 6B tokens, 100 dimensions), looked up in ``data.embedding.dir`` or else in
``<root>/GloVe``, ``<root>/glove`` and ``<root>`` as ``<name>.txt``, ``<name>.txt.gz`` or inside
``glove.6B.zip``; or a path to such a file. When no file is found and ``data.download`` is true,
the official ``glove.6B.zip`` (822 MB; Stanford publishes no checksum, the zip's CRC checks the
member on reading) is downloaded into the first folder. Without a file the loader stops with an
error that says where it looked; a random embedding is used only when the configuration asks
for it with ``data.embedding.pretrained=null``.

Rows of the embedding matrix: ``<pad>`` is zero; a word found in the file gets its vector;
every other word (``<unk>`` included) gets a random vector drawn from N(0, s²), where s is the
standard deviation of all values in the file (about 0.4 for glove.6B.100d), with a generator
seeded by ``data.embedding.seed``, so the same vocabulary always gets the same matrix.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from datasets import cache
from datasets.registry import DataNotFoundError

log = logging.getLogger(__name__)

GLOVE_URL = "https://nlp.stanford.edu/data/glove.6B.zip"
GLOVE_ZIP = "glove.6B.zip"
GLOVE_6B_NAMES = tuple(f"glove.6B.{dim}d" for dim in (50, 100, 200, 300))
DEFAULT_FOLDERS = ("GloVe", "glove", ".")
PAD_TOKEN = "<pad>"


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".txt", ".gz", ".zip"))


def _folders(cfg_data: DictConfig) -> list[Path]:
    embedding = cfg_data.get("embedding") or {}
    if embedding.get("dir"):
        return [Path(embedding.dir).expanduser()]
    root = Path(cfg_data.root).expanduser()
    return [root / name for name in DEFAULT_FOLDERS]


def _candidates(folder: Path, name: str) -> list[Path]:
    paths = [folder / f"{name}.txt", folder / f"{name}.txt.gz"]
    if name.startswith("glove.6B."):
        paths.append(folder / GLOVE_ZIP)
    return paths


def _missing_message(spec: str, looked: list[Path], error: Exception | None) -> str:
    lines = [
        f"GloVe vectors {spec!r} (data.embedding.pretrained) not found; looked for:",
        *(f"  {path}" for path in looked),
        f"Download {GLOVE_URL} into one of these folders (or set data.download=true on a "
        "machine with internet access), point data.embedding.dir or data.embedding.pretrained "
        "at the file, or set data.embedding.pretrained=null to train with a randomly "
        "initialised embedding instead.",
    ]
    if error is not None:
        lines.append(f"The download failed: {type(error).__name__}: {error}")
    return "\n".join(lines)


def locate(cfg_data: DictConfig) -> Path:
    """The file holding the vectors named by ``data.embedding.pretrained``, downloading
    ``glove.6B.zip`` when allowed; raises ``DataNotFoundError`` saying where it looked."""
    spec = str(cfg_data.embedding.pretrained)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if path.is_file():
            return path
        raise DataNotFoundError(_missing_message(spec, [path], None))
    folders = _folders(cfg_data)
    looked = [path for folder in folders for path in _candidates(folder, spec)]
    for path in looked:
        if path.is_file():
            return path
    if cfg_data.get("download", False) and spec in GLOVE_6B_NAMES:
        from torchvision.datasets.utils import download_url

        log.info("downloading %s into %s", GLOVE_URL, folders[0])
        try:
            download_url(GLOVE_URL, str(folders[0]), GLOVE_ZIP)
        except Exception as error:  # network errors come in many types
            raise DataNotFoundError(_missing_message(spec, looked, error)) from error
        return folders[0] / GLOVE_ZIP
    raise DataNotFoundError(_missing_message(spec, looked, None))


def _lines(path: Path, dim: int) -> Iterator[str]:
    """The text lines of a GloVe file: plain, gzip-compressed, or the ``<...>.<dim>d.txt``
    member of a zip archive."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.endswith(f".{dim}d.txt")]
            if not members:
                raise ValueError(
                    f"{path} holds no *.{dim}d.txt member (data.embedding.dim={dim}); "
                    f"members: {archive.namelist()}"
                )
            with archive.open(members[0]) as raw:
                yield from io.TextIOWrapper(raw, encoding="utf-8")
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        yield from file


def read_vectors(path: Path, dim: int, wanted: set[str]) -> tuple[dict[str, np.ndarray], float]:
    """Reads the vectors of the ``wanted`` words from a GloVe text file.

    Returns the found vectors and the standard deviation of every value in the file.
    """
    found: dict[str, np.ndarray] = {}
    total = total_sq = 0.0
    count = 0
    for number, line in enumerate(_lines(path, dim), start=1):
        parts = line.rstrip("\n").rstrip(" ").split(" ")
        if len(parts) < dim + 1:
            raise ValueError(
                f"{path}, line {number}: {len(parts) - 1} values, expected {dim} "
                "(data.embedding.dim)"
            )
        word = " ".join(parts[:-dim])
        vector = np.asarray(parts[-dim:], dtype=np.float64)
        total += float(vector.sum())
        total_sq += float(np.square(vector).sum())
        count += dim
        if word in wanted and word not in found:
            found[word] = vector.astype(np.float32)
    if count == 0:
        raise ValueError(f"{path} holds no vectors")
    mean = total / count
    std = max(total_sq / count - mean * mean, 0.0) ** 0.5
    return found, std


def build_matrix(path: Path, words: list[str], dim: int, seed: int) -> torch.Tensor:
    """The (len(words), dim) embedding matrix for a vocabulary (see the module docstring)."""
    vectors, std = read_vectors(path, dim, set(words))
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(len(words), dim, generator=generator) * std
    for row, word in enumerate(words):
        if word == PAD_TOKEN:
            matrix[row] = 0.0
        elif word in vectors:
            matrix[row] = torch.from_numpy(vectors[word])
    log.info(
        "GloVe %s: %d of %d vocabulary words found; the others ~ N(0, %.3f²)",
        path.name,
        len(vectors),
        len(words),
        std,
    )
    return matrix


def embedding_for(cfg_data: DictConfig, path: Path, words: list[str]) -> torch.Tensor:
    """``build_matrix`` for ``data.embedding``, cached per file, vocabulary, width and seed."""
    embedding = cfg_data.embedding
    dim, seed = int(embedding.get("dim", 100)), int(embedding.get("seed", 0))
    if dim < 1:
        raise ValueError(f"data.embedding.dim={dim}; expected a positive integer")
    stat = path.stat()
    key = hashlib.sha1(
        "\n".join([str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *words]).encode()
    ).hexdigest()[:12]
    return cache.load_or_build(
        cfg_data, f"glove-{key}-{dim}d-seed{seed}", lambda: build_matrix(path, words, dim, seed)
    )
