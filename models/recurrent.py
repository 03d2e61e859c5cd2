"""The IMDb sentiment model of the LOSSGRAD paper (Appendix A): a word embedding (GloVe 6B,
100 dimensions), one bidirectional LSTM layer with 256 units per direction, and a linear layer
from the two final hidden states to one logit."""

from __future__ import annotations

import torch
from torch import nn

PAD_INDEX = 0


class BiLSTMClassifier(nn.Module):
    """Embedding -> 1-layer BiLSTM over the real (unpadded) tokens -> linear -> 1 logit.

    Args:
        vocab_size: rows of the embedding, special tokens included (``<pad>`` is row 0).
        embedding_dim: width of the embedding; must match ``pretrained_embedding`` if given.
        hidden_size: LSTM units per direction (256 in the paper).
        pretrained_embedding: a (vocab_size, embedding_dim) matrix copied into the embedding
            (GloVe vectors); None keeps PyTorch's N(0, 1) initialisation.
        freeze_embedding: keep the embedding fixed during training.

    ``forward(tokens, lengths)`` takes padded token ids (batch, length), padding at the end,
    and the number of real tokens of each row. The features are the final hidden states of
    both directions, each taken after the direction has read exactly the real tokens, as
    with packed sequences (``pack_padded_sequence``): the forward LSTM's state at the last
    real token, and that of the backward LSTM, which reads every review reversed within its
    length, at the first.

    .. note::
        The two directions are two ``nn.LSTM`` run on padded batches rather than one
        bidirectional ``nn.LSTM`` on a ``PackedSequence``; the result is the same (a test
        checks it against packing), but PyTorch's packed LSTM is many times slower, most of
        all in the backward pass and for long sequences (pytorch/pytorch#149194). Each batch
        is cut to its longest review, which reads that length back to the host once.
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
        self.forward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.classifier = nn.Linear(2 * hidden_size, 1)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The concatenated final hidden states of both directions, (batch, 2·hidden)."""
        lengths = lengths.clamp(min=1, max=tokens.shape[1])
        tokens = tokens[:, : int(lengths.max())]
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        # Each review reversed within its length; the padding stays at the end.
        last = (lengths - 1)[:, None]
        reversed_index = torch.where(positions < lengths[:, None], last - positions, positions)
        reversed_tokens = tokens.gather(1, reversed_index)
        forward_states, _ = self.forward_lstm(self.embedding(tokens))
        backward_states, _ = self.backward_lstm(self.embedding(reversed_tokens))
        # An LSTM's output at step t depends on steps <= t only, so the padding after the
        # last real token does not reach the state read here.
        index = last[:, :, None].expand(-1, 1, forward_states.shape[2])
        return torch.cat(
            [forward_states.gather(1, index)[:, 0], backward_states.gather(1, index)[:, 0]], dim=1
        )

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(tokens, lengths)).squeeze(1)
