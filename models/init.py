"""Weight initialisation schemes."""

from __future__ import annotations

import torch
from torch import nn

INIT_SCHEMES = ("default", "paper")


def paper_init(model: nn.Module, weight_std: float = 0.05, bias: float = 0.2) -> nn.Module:
    """The LOSSGRAD paper's initialisation: every weight of a linear or convolutional layer
    drawn from N(0, weight_std²) and every bias set to ``bias``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.normal_(0.0, weight_std)
                if module.bias is not None:
                    module.bias.fill_(bias)
    return model


def initialise(model: nn.Module, scheme: str, weight_std: float, bias: float) -> nn.Module:
    """Applies ``scheme``: ``default`` keeps PyTorch's (or the model's own) initialisation."""
    if scheme == "paper":
        return paper_init(model, weight_std, bias)
    if scheme != "default":
        raise ValueError(f"model_init.scheme={scheme!r}; valid: {INIT_SCHEMES}")
    return model
