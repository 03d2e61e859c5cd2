"""IMDb reader, tokenizer, vocabulary and GloVe embedding."""

from __future__ import annotations

import gzip
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from datasets import DataNotFoundError, glove, imdb, load_splits

REVIEWS = {
    ("train", "pos", "0_9.txt"): "A great movie! I loved it.<br /><br />Great acting.",
    ("train", "pos", "1_8.txt"): "Great fun, great cast.",
    ("train", "neg", "0_2.txt"): "Awful. I didn't like it at all.",
    ("train", "neg", "1_1.txt"): "Boring movie, boring plot",
    ("test", "pos", "0_10.txt"): "Great zebra movie",
    ("test", "neg", "0_3.txt"): "Awful zebra",
    ("test", "neg", "1_4.txt"): "boring",
}


def write_tree(root: Path) -> Path:
    for (split, label, name), text in REVIEWS.items():
        path = root / "aclImdb" / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    # Files the reader must ignore: unlabelled reviews and a URL list.
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("great great great")
    (root / "aclImdb" / "test" / "urls_pos.txt").write_text("http://example.org")
    return root / "aclImdb"


def data_config(root: Path, cache: Path, **overrides) -> OmegaConf:
    spec = {
        "name": "imdb",
        "root": str(root),
        "download": False,
        "cache_dir": str(cache),
        "vocab_size": 100,
        "min_freq": 1,
        "max_length": 6,
        "embedding": {"pretrained": None, "dim": 4, "dir": None, "seed": 0},
        "synthetic": False,
        "synthetic_size": [10, 5],
    }
    spec.update(overrides)
    return OmegaConf.create(spec)


def test_tokenizer_lowercases_strips_breaks_and_splits_clitics():
    assert imdb.tokenize("I didn't like it.<br /><br />The END!") == [
        "i",
        "did",
        "n't",
        "like",
        "it",
        ".",
        "the",
        "end",
        "!",
    ]
    assert imdb.tokenize("It's a 10/10 film,can't wait") == [
        "it",
        "'s",
        "a",
        "10",
        "/",
        "10",
        "film",
        ",",
        "ca",
        "n't",
        "wait",
    ]
    assert imdb.tokenize("Café—great") == ["café", "—", "great"]


def test_folder_reader_builds_vocabulary_from_training_split_only(tmp_path):
    write_tree(tmp_path / "data")
    splits = load_splits(data_config(tmp_path / "data", tmp_path / "cache"))
    words = splits.info["vocabulary"]
    assert words[:2] == ["<pad>", "<unk>"]
    assert words[2:4] == [".", "great"]  # 5 and 4 times in training, the most frequent
    assert "zebra" not in words  # only in the test split
    assert "acting" in words and "plot" in words

    tokens, lengths, labels = splits.train
    assert tokens.shape == (4, 6) and tokens.dtype == torch.int64
    assert sorted(labels.tolist()) == [0, 0, 1, 1]
    for row, length in zip(tokens, lengths.tolist(), strict=True):
        assert (row[:length] != imdb.PAD_ID).all() and (row[length:] == imdb.PAD_ID).all()
    assert lengths.max() == 6  # the first review has 11 tokens and is cut to 6

    test_tokens, test_lengths, test_labels = splits.test
    assert len(test_labels) == 3
    index = {word: i for i, word in enumerate(words)}
    decoded = {
        tuple(words[i] for i in row[:length].tolist())
        for row, length in zip(test_tokens, test_lengths.tolist(), strict=True)
    }
    assert decoded == {("great", "<unk>", "movie"), ("awful", "<unk>"), ("boring",)}
    assert splits.info["model_kwargs"]["vocab_size"] == len(words)
    assert splits.info["model_kwargs"]["pretrained_embedding"] is None
    assert index["great"] == 3


def test_vocab_size_and_min_freq_limit_the_vocabulary(tmp_path):
    write_tree(tmp_path / "data")
    small = load_splits(data_config(tmp_path / "data", tmp_path / "cache", vocab_size=3))
    # "." 5 times, great 4, then five words twice each, ties broken alphabetically.
    assert small.info["vocabulary"] == ["<pad>", "<unk>", ".", "great", ","]
    assert int(small.train[0].max()) == 4
    frequent = load_splits(data_config(tmp_path / "data", tmp_path / "cache", min_freq=2))
    # ". great , boring i it movie" appear at least twice in training.
    assert set(frequent.info["vocabulary"][2:]) == {
        "great",
        ".",
        ",",
        "boring",
        "i",
        "it",
        "movie",
    }


def test_tarball_reads_like_the_folder(tmp_path):
    folder_root = tmp_path / "folder"
    write_tree(folder_root)
    tar_root = tmp_path / "tar"
    (tar_root / "IMDB").mkdir(parents=True)
    with tarfile.open(tar_root / "IMDB" / "aclImdb_v1.tar.gz", "w:gz") as archive:
        archive.add(folder_root / "aclImdb", arcname="aclImdb")
    from_folder = load_splits(data_config(folder_root, tmp_path / "cache"))
    from_tarball = load_splits(data_config(tar_root, tmp_path / "cache"))
    assert imdb.find_source(tar_root).name == "aclImdb_v1.tar.gz"
    assert from_folder.info["vocabulary"] == from_tarball.info["vocabulary"]
    for left, right in zip(
        from_folder.train + from_folder.test, from_tarball.train + from_tarball.test, strict=True
    ):
        assert torch.equal(left, right)


def test_missing_reviews_say_where_to_put_them(tmp_path):
    with pytest.raises(DataNotFoundError, match="aclImdb"):
        load_splits(data_config(tmp_path, tmp_path / "cache"))


@pytest.mark.parametrize("key", ["vocab_size", "min_freq", "max_length"])
def test_bad_text_settings_are_rejected(tmp_path, key):
    with pytest.raises(ValueError, match=f"data.{key}=0"):
        load_splits(data_config(tmp_path, tmp_path / "cache", **{key: 0}))


# GloVe

GLOVE_LINES = ["great 1 2 3 4", "movie 0.5 0.5 0.5 0.5", ". -1 0 1 0", "unused 9 9 9 9"]


def write_glove(folder: Path, name: str = "glove.tiny.4d.txt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = "\n".join(GLOVE_LINES) + "\n"
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("glove.6B.4d.txt", text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("file_name", "pretrained"),
    [
        ("glove.tiny.4d.txt", "glove.tiny.4d"),
        ("glove.tiny.4d.txt.gz", "glove.tiny.4d"),
        ("glove.6B.zip", "glove.6B.4d"),
    ],
)
def test_glove_rows_for_the_vocabulary(tmp_path, file_name, pretrained):
    write_tree(tmp_path / "data")
    write_glove(tmp_path / "data" / "GloVe", file_name)
    cfg = data_config(tmp_path / "data", tmp_path / "cache")
    cfg.embedding.pretrained = pretrained
    splits = load_splits(cfg)
    words = splits.info["vocabulary"]
    matrix = splits.info["model_kwargs"]["pretrained_embedding"]
    assert matrix.shape == (len(words), 4)
    assert torch.equal(matrix[words.index("great")], torch.tensor([1.0, 2, 3, 4]))
    assert torch.equal(matrix[words.index(".")], torch.tensor([-1.0, 0, 1, 0]))
    assert not matrix[0].any()  # <pad>
    missing = [i for i, word in enumerate(words) if word not in {"great", "movie", ".", "<pad>"}]
    assert matrix[missing].abs().sum(dim=1).gt(0).all()  # random, not zero
    again = glove.build_matrix(glove.locate(cfg), words, 4, seed=0)
    assert torch.equal(again, matrix)  # the seed fixes the random rows


def test_random_rows_follow_the_spread_of_the_file(tmp_path):
    generator = torch.Generator().manual_seed(0)
    values = 0.4 * torch.randn(200, 4, generator=generator)
    path = tmp_path / "vectors.txt"
    path.write_text(
        "".join(
            f"w{i} " + " ".join(f"{v:.6f}" for v in row) + "\n" for i, row in enumerate(values)
        )
    )
    words = ["<pad>", "<unk>", *(f"absent{i}" for i in range(2000))]
    matrix = glove.build_matrix(path, words, 4, seed=3)
    assert float(matrix[1:].std()) == pytest.approx(float(values.std()), rel=0.05)


def test_missing_glove_is_an_error_that_names_the_way_out(tmp_path):
    write_tree(tmp_path / "data")
    cfg = data_config(tmp_path / "data", tmp_path / "cache")
    cfg.embedding.pretrained = "glove.6B.100d"
    with pytest.raises(DataNotFoundError) as error:
        load_splits(cfg)
    message = str(error.value)
    assert str(tmp_path / "data" / "GloVe" / "glove.6B.100d.txt") in message
    assert "glove.6B.zip" in message
    assert "data.embedding.pretrained=null" in message
    # The check comes before the reviews are read: nothing was cached.
    assert not (tmp_path / "cache").exists()


def test_glove_line_of_the_wrong_width_is_rejected(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("great 1 2 3\n")
    with pytest.raises(ValueError, match="expected 4"):
        glove.read_vectors(path, 4, {"great"})


def test_synthetic_imdb_needs_no_files_even_with_pretrained_embedding(tmp_path):
    cfg = data_config(tmp_path / "nowhere", tmp_path / "cache", synthetic=True, max_length=50)
    cfg.embedding.pretrained = "glove.6B.100d"
    splits = load_splits(cfg)
    tokens, lengths, labels = splits.train
    assert tokens.shape == (10, 50) and tokens.dtype == torch.int64
    assert lengths.max() <= imdb.SYNTHETIC_MAX_TOKENS and lengths.min() >= 1
    assert set(labels.tolist()) <= {0, 1}
    kwargs = splits.info["model_kwargs"]
    assert kwargs["pretrained_embedding"].shape == (kwargs["vocab_size"], 4)


@pytest.mark.slow
def test_real_imdb_tarball_counts(shared_data, cache_dir):
    source = shared_data / "IMDB"
    if not any(source.glob("aclImdb*.tar.gz")):
        pytest.skip("no IMDb tarball in the shared data")
    cfg = data_config(shared_data, cache_dir, vocab_size=25000, max_length=500)
    splits = load_splits(cfg)
    for split in (splits.train, splits.test):
        tokens, lengths, labels = split
        assert tokens.shape == (25000, 500)
        assert int(labels.sum()) == 12500
        assert 200 < float(lengths.float().mean()) < 300
    # A random subset (the stored order is shuffled) is close to balanced.
    assert 400 < int(splits.train[2][:1000].sum()) < 600
    assert len(splits.info["vocabulary"]) == 25002


# The model


def test_bilstm_features_equal_a_packed_bidirectional_lstm():
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    from models.recurrent import BiLSTMClassifier

    torch.manual_seed(0)
    model = BiLSTMClassifier(vocab_size=30, embedding_dim=5, hidden_size=7).double()
    packed_lstm = nn.LSTM(5, 7, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(packed_lstm, name).copy_(getattr(model.forward_lstm, name))
            getattr(packed_lstm, f"{name}_reverse").copy_(getattr(model.backward_lstm, name))
    lengths = torch.tensor([9, 1, 4, 6])
    tokens = torch.randint(2, 30, (4, 12))
    tokens[torch.arange(12) >= lengths[:, None]] = 0

    features = model.features(tokens, lengths)
    packed = pack_padded_sequence(
        model.embedding(tokens), lengths, batch_first=True, enforce_sorted=False
    )
    _, (final, _) = packed_lstm(packed)
    torch.testing.assert_close(features, torch.cat([final[0], final[1]], dim=1))
    # Padding content and width do not matter.
    wider = torch.cat([tokens, torch.randint(2, 30, (4, 5))], dim=1)
    torch.testing.assert_close(model.features(wider, lengths), features)


def test_bilstm_takes_a_pretrained_matrix_and_can_freeze_it():
    from models.recurrent import BiLSTMClassifier

    matrix = torch.randn(10, 4)
    model = BiLSTMClassifier(10, 4, 3, pretrained_embedding=matrix, freeze_embedding=True)
    assert torch.equal(model.embedding.weight, matrix)
    assert not model.embedding.weight.requires_grad
    logits = model(torch.randint(0, 10, (2, 5)), torch.tensor([5, 2]))
    assert logits.shape == (2,)
    with pytest.raises(ValueError, match="expected \\(vocab_size, embedding_dim\\)"):
        BiLSTMClassifier(10, 5, 3, pretrained_embedding=matrix)
