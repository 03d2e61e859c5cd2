"""The IMDb Large Movie Review data set (Maas et al. 2011): 25,000 training and 25,000 test
reviews labelled positive (1) or negative (0), as padded token-id tensors.

The reviews are read from the ``aclImdb`` layout, ``{train,test}/{pos,neg}/<id>_<rating>.txt``,
either unpacked (``<root>/aclImdb/`` or ``<root>/IMDB/aclImdb/``) or as a tarball
(``<root>/aclImdb*.tar.gz`` or ``<root>/IMDB/aclImdb*.tar.gz``), read without unpacking. When
neither exists and ``data.download`` is true, the original ``aclImdb_v1.tar.gz`` is downloaded
into ``<root>`` with torchvision's download helper, which checks its MD5.

Text to tensors:

- ``tokenize``: lowercase, ``<br />`` tags become spaces, then a regular expression splits
  words (runs of letters and digits), the clitics ``n't 's 're 've 'll 'd 'm`` (split as the
  Stanford tokenizer behind GloVe splits them: "don't" -> "do", "n't") and single punctuation
  characters.
- Vocabulary: the training split only. The ``data.vocab_size`` most frequent words that occur
  at least ``data.min_freq`` times (ties broken alphabetically), after two special tokens:
  ``<pad>`` (id 0) and ``<unk>`` (id 1, every other word, test words unseen in training
  included).
- Every review keeps its first ``data.max_length`` tokens and is padded with ``<pad>``; a
  split is ``(tokens int64 [N, max_length], lengths int64 [N], labels int64 [N])``.
- Examples are stored in a fixed shuffled order (seed 0, the same for every run), so that
  ``data.train_subset`` / ``data.test_subset`` take random, nearly balanced subsets.

Tokenised reviews are cached (``datasets.cache``), so the tarball is read and tokenised once;
vocabulary size, minimum frequency and length are applied on every load in well under a second.
When ``data.embedding.pretrained`` names a GloVe file, ``info["model_kwargs"]`` carries its
vectors for the vocabulary (see ``datasets.glove``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
from collections import Counter
from pathlib import Path

import torch
from omegaconf import DictConfig

from datasets import cache, glove, registry
from datasets.registry import DataNotFoundError, DataSplits

log = logging.getLogger(__name__)

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
SEARCH_FOLDERS = (".", "IMDB", "imdb")
SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
PAD_ID, UNK_ID = 0, 1
# Changes whenever tokenize() or the cached format changes, so old caches are not reused.
TOKENIZER_VERSION = 1
SHUFFLE_SEED = 0
SYNTHETIC_MAX_TOKENS = 32

_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ALNUM = r"[^\W_]"
_TOKEN = re.compile(
    rf"{_ALNUM}+?(?=n't\b)"  # "do" of "don't"
    r"|n't\b"
    r"|'(?:s|re|ve|ll|d|m)\b"
    rf"|{_ALNUM}+"
    r"|\S"
)


def tokenize(text: str) -> list[str]:
    """Splits a review into lowercase tokens: words, clitics and punctuation characters.

    >>> tokenize("I didn't like it.<br /><br />The END!")
    ['i', 'did', "n't", 'like', 'it', '.', 'the', 'end', '!']
    """
    return _TOKEN.findall(_BREAK_TAG.sub(" ", text.lower()))


# Finding and reading the reviews


def find_source(root: Path) -> Path | None:
    """The unpacked ``aclImdb`` folder or the tarball under ``root``, or None."""
    for name in SEARCH_FOLDERS:
        folder = root / name
        for candidate in (folder / "aclImdb", folder):
            if (candidate / "train" / "pos").is_dir() and (candidate / "test" / "neg").is_dir():
                return candidate
        if folder.is_dir():
            archives = sorted(folder.glob("aclImdb*.tar.gz"))
            if archives:
                return archives[0]
    return None


def _classify(relative: str) -> tuple[str, int, str] | None:
    """(split, label, file name) for ``.../{train,test}/{pos,neg}/<name>.txt``, else None."""
    parts = relative.replace("\\", "/").split("/")
    if len(parts) < 3 or not parts[-1].endswith(".txt"):
        return None
    split, label = parts[-3], parts[-2]
    if split not in SPLITS or label not in LABELS:
        return None
    return split, LABELS[label], parts[-1]


def read_reviews(source: Path) -> dict[str, tuple[list[str], list[int]]]:
    """Reads every labelled review of a folder or tarball in the aclImdb layout.

    Returns ``{split: (texts, labels)}`` in a fixed order: sorted by label and file name, then
    permuted with a fixed seed.
    """
    items: dict[str, list[tuple[int, str, str]]] = {split: [] for split in SPLITS}
    if source.is_file():
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                found = _classify(member.name) if member.isfile() else None
                if found is not None:
                    split, label, name = found
                    text = archive.extractfile(member).read().decode("utf-8")
                    items[split].append((label, name, text))
    else:
        for split in SPLITS:
            for label_name, label in LABELS.items():
                for path in (source / split / label_name).glob("*.txt"):
                    items[split].append((label, path.name, path.read_text(encoding="utf-8")))
    reviews = {}
    for split, entries in items.items():
        if not entries:
            raise DataNotFoundError(f"IMDb: no {split}/pos or {split}/neg reviews in {source}")
        entries.sort()
        order = torch.randperm(len(entries), generator=torch.Generator().manual_seed(SHUFFLE_SEED))
        texts = [entries[i][2] for i in order.tolist()]
        labels = [entries[i][0] for i in order.tolist()]
        reviews[split] = (texts, labels)
    return reviews


# Tokenised form, cached: ids index the training words by descending frequency


def build_tokenised(reviews: dict[str, tuple[list[str], list[int]]]) -> dict:
    """Tokenises every review and numbers the training split's words by frequency.

    Returns ``{"words", "counts", "train", "test"}``: ``words`` lists every training word, most
    frequent first (ties alphabetical), ``counts`` their frequencies; each split is
    ``(ids int32 [total tokens], offsets int64 [N + 1], labels int64 [N])`` with word ``i`` of
    ``words`` stored as ``i + 2`` and test words absent from training as ``<unk>``.
    """
    tokenised = {
        split: [tokenize(text) for text in texts] for split, (texts, _) in reviews.items()
    }
    counter = Counter(token for tokens in tokenised["train"] for token in tokens)
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    words = [word for word, _ in ranked]
    index = {word: rank + len(SPECIALS) for rank, word in enumerate(words)}
    result: dict = {
        "words": words,
        "counts": torch.tensor([count for _, count in ranked], dtype=torch.int64),
    }
    for split, documents in tokenised.items():
        ids = [index.get(token, UNK_ID) for tokens in documents for token in tokens]
        lengths = torch.tensor([len(tokens) for tokens in documents], dtype=torch.int64)
        offsets = torch.zeros(len(documents) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lengths, 0)
        labels = torch.tensor(reviews[split][1], dtype=torch.int64)
        result[split] = (torch.tensor(ids, dtype=torch.int32), offsets, labels)
    return result


def vocabulary(tokenised: dict, vocab_size: int, min_freq: int) -> list[str]:
    """The special tokens followed by the kept training words, in id order."""
    counts = tokenised["counts"]
    frequent = int((counts >= min_freq).sum())
    return [*SPECIALS, *tokenised["words"][: min(vocab_size, frequent)]]


def encode_split(
    split: tuple[torch.Tensor, torch.Tensor, torch.Tensor], vocab_len: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pads or truncates every review to ``max_length`` ids; ids outside the vocabulary become
    ``<unk>``. Returns ``(tokens [N, max_length], lengths [N], labels [N])``."""
    ids, offsets, labels = split
    ids = ids.long()
    ids = torch.where(ids < vocab_len, ids, torch.full_like(ids, UNK_ID))
    lengths = (offsets[1:] - offsets[:-1]).clamp(max=max_length)
    positions = torch.arange(max_length)
    index = (offsets[:-1, None] + positions).clamp(max=max(len(ids) - 1, 0))
    present = positions < lengths[:, None]
    gathered = ids[index] if len(ids) else torch.zeros_like(index)
    tokens = torch.where(present, gathered, torch.full_like(gathered, PAD_ID))
    return tokens, lengths, labels


# The registered loaders


def _check_text_config(cfg_data: DictConfig) -> tuple[int, int, int]:
    values = {key: cfg_data.get(key) for key in ("vocab_size", "min_freq", "max_length")}
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"data.{key}={value!r}; expected a positive integer")
    return values["vocab_size"], values["min_freq"], values["max_length"]


def _source_key(path: Path) -> str:
    stat = path.stat()
    text = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:v{TOKENIZER_VERSION}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _missing_message(root: Path, error: Exception | None) -> str:
    folders = ", ".join(str((root / name).resolve()) for name in SEARCH_FOLDERS)
    lines = [
        "IMDb: found neither an aclImdb/ folder ({train,test}/{pos,neg}/*.txt) nor an "
        f"aclImdb*.tar.gz in {folders}.",
        f"Download {IMDB_URL} into data.root (or set data.download=true on a machine with "
        "internet access), or point data.root at a folder holding one of these.",
    ]
    if error is not None:
        lines.append(f"The download failed: {type(error).__name__}: {error}")
    return "\n".join(lines)


def _locate_or_download(cfg_data: DictConfig) -> Path:
    root = Path(cfg_data.root).expanduser()
    source = find_source(root)
    if source is not None:
        return source
    if not cfg_data.get("download", False):
        raise DataNotFoundError(_missing_message(root, None))
    from torchvision.datasets.utils import download_url

    log.info("downloading %s into %s", IMDB_URL, root)
    try:
        # The reader takes the tarball as it is, so it is not unpacked.
        download_url(IMDB_URL, str(root), IMDB_ARCHIVE, IMDB_MD5)
    except Exception as error:  # network errors come in many types
        raise DataNotFoundError(_missing_message(root, error)) from error
    return root / IMDB_ARCHIVE


def load_imdb(cfg_data: DictConfig) -> DataSplits:
    vocab_size, min_freq, max_length = _check_text_config(cfg_data)
    embedding = cfg_data.get("embedding") or {}
    # Check for the embedding file before the long first read of the reviews.
    glove_path = glove.locate(cfg_data) if embedding.get("pretrained") else None
    source = _locate_or_download(cfg_data)
    tokenised = cache.load_or_build(
        cfg_data,
        f"imdb-tokens-{_source_key(source)}",
        lambda: build_tokenised(read_reviews(source)),
    )
    words = vocabulary(tokenised, vocab_size, min_freq)
    train = encode_split(tokenised["train"], len(words), max_length)
    test = encode_split(tokenised["test"], len(words), max_length)
    truncated = float((tokenised["train"][1].diff() > max_length).float().mean())
    log.info(
        "IMDb from %s: vocabulary %d (incl. %s), %.1f%% of training reviews cut to %d tokens",
        source,
        len(words),
        "/".join(SPECIALS),
        100 * truncated,
        max_length,
    )
    pretrained = None
    if glove_path is not None:
        pretrained = glove.embedding_for(cfg_data, glove_path, words)
    info = {
        "vocabulary": words,
        "origin": str(source),
        "model_kwargs": {"vocab_size": len(words), "pretrained_embedding": pretrained},
    }
    return DataSplits(train, test, info)


def synthetic_imdb(cfg_data: DictConfig, n_train: int, n_test: int, seed: int) -> DataSplits:
    """Random token ids, lengths and labels with IMDb's shapes and dtypes; no files needed.
    Reviews are at most ``SYNTHETIC_MAX_TOKENS`` tokens long (the tensors are still
    ``max_length`` wide), which keeps smoke runs of the LSTM short.

    When ``data.embedding.pretrained`` is set, a random N(0, 0.4²) matrix of the configured
    width stands in for the GloVe vectors, so the pretrained-embedding path of the model is
    exercised without any GloVe file.
    """
    vocab_size, _, max_length = _check_text_config(cfg_data)
    vocab_len = vocab_size + len(SPECIALS)
    generator = torch.Generator().manual_seed(seed)

    def split(n: int):
        longest = min(max_length, SYNTHETIC_MAX_TOKENS)
        lengths = torch.randint(1, longest + 1, (n,), generator=generator)
        tokens = torch.randint(len(SPECIALS), vocab_len, (n, max_length), generator=generator)
        tokens[torch.arange(max_length) >= lengths[:, None]] = PAD_ID
        return tokens, lengths, torch.randint(0, 2, (n,), generator=generator)

    train, test = split(n_train), split(n_test)
    embedding = cfg_data.get("embedding") or {}
    pretrained = None
    if embedding.get("pretrained"):
        dim = int(embedding.get("dim", 100))
        pretrained = 0.4 * torch.randn(vocab_len, dim, generator=generator)
        pretrained[PAD_ID] = 0.0
    info = {"model_kwargs": {"vocab_size": vocab_len, "pretrained_embedding": pretrained}}
    return DataSplits(train, test, info)


registry.register("imdb", load_imdb, synthetic_imdb)
