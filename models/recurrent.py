"""The IMDb sentiment model of the LOSSGRAD paper (Appendix A): a word embedding (GloVe 6B,
100 dimensions), one bidirectional LSTM layer with 256 units per direction, and a linear layer
from the two final hidden states to one logit."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

PAD_INDEX = 0


class BiLSTMClassifier(nn.Module):
    """Embedding -> 1-layer BiLSTM over the packed (unpadded) sequences -> linear -> 1 logit.

    Args:
        vocab_size: rows of the embedding, special tokens included (``<pad>`` is row 0).
        embedding_dim: width of the embedding; must match ``pretrained_embedding`` if given.
        hidden_size: LSTM units per direction (256 in the paper).
        pretrained_embedding: a (vocab_size, embedding_dim) matrix copied into the embedding
            (GloVe vectors); None keeps PyTorch's N(0, 1) initialisation.
        freeze_embedding: keep the embedding fixed during training.

    ``forward(tokens, lengths)`` takes padded token ids (batch, length) and the number of real
    tokens of each row; the LSTM reads only the real tokens (``pack_padded_sequence``), so the
    padding never reaches the classifier.

    .. note::
        Packing needs the lengths on the CPU, which costs one device-to-host copy per batch
        when training on a GPU.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 100,
        hidden_size: int = 256,
        pretrained_embedding: torch.Tensor | None = None,
        freeze_embedding: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or embedding_dim < 1 or hidden_size < 1:
            raise ValueError(
                f"vocab_size={vocab_size}, embedding_dim={embedding_dim}, "
                f"hidden_size={hidden_size}; expected vocab_size >= 2 and positive widths"
            )
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_INDEX)
        if pretrained_embedding is not None:
            expected = (vocab_size, embedding_dim)
            if tuple(pretrained_embedding.shape) != expected:
                raise ValueError(
                    f"pretrained_embedding has shape {tuple(pretrained_embedding.shape)}, "
                    f"expected (vocab_size, embedding_dim) = {expected}"
                )
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained_embedding)
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden_size, 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(tokens)
        packed = pack_padded_sequence(
            embedded, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (final_hidden, _) = self.lstm(packed)
        # final_hidden: (2 directions, batch, hidden); forward's last step and backward's first.
        features = torch.cat([final_hidden[0], final_hidden[1]], dim=1)
        return self.classifier(features).squeeze(1)
