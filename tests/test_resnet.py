"""ResNet for CIFAR: depth, parameter count, option-A shortcuts, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.resnet import BasicBlock, CifarResNet, ZeroPadShortcut

# He et al. (2016), Table 6: ResNet-56 has 0.85 M parameters.
PUBLISHED_RESNET56_PARAMETERS = 0.85e6


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_resnet56_has_the_published_parameter_count():
    count = count_parameters(CifarResNet(56))
    # Convolutions, BatchNorm scales and shifts, and the 64 -> 10 classifier: 853,018.
    assert count == 853_018
    assert abs(count - PUBLISHED_RESNET56_PARAMETERS) / PUBLISHED_RESNET56_PARAMETERS < 0.01


def test_depth_counts_weighted_layers():
    model = CifarResNet(56)
    blocks = [module for module in model.modules() if isinstance(module, BasicBlock)]
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert len(blocks) == 27
    assert len(convolutions) + len(linears) == 56
    # ResNet-20: 0.27 M parameters in He et al.'s Table 6.
    assert abs(count_parameters(CifarResNet(20)) - 0.27e6) / 0.27e6 < 0.01


@pytest.mark.parametrize("depth", [0, 7, 21, 57])
def test_depth_other_than_6n_plus_2_is_rejected(depth):
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth)


def test_zero_pad_shortcut_subsamples_and_pads_channels():
    inputs = torch.randn(2, 16, 32, 32)
    outputs = ZeroPadShortcut(16, 32, stride=2)(inputs)
    assert outputs.shape == (2, 32, 16, 16)
    assert torch.equal(outputs[:, 8:24], inputs[:, :, ::2, ::2])
    assert not outputs[:, :8].any() and not outputs[:, 24:].any()
    assert not any(True for _ in ZeroPadShortcut(16, 32, 2).parameters())


def test_only_stage_transitions_change_shape():
    model = CifarResNet(56)
    shapes = []
    hidden = model.stem(torch.randn(1, 3, 32, 32))
    for stage in model.stages:
        for block in stage:
            hidden = block(hidden)
            shapes.append(tuple(hidden.shape[1:]))
    assert shapes[:9] == [(16, 32, 32)] * 9
    assert shapes[9:18] == [(32, 16, 16)] * 9
    assert shapes[18:] == [(64, 8, 8)] * 9
    shortcuts = [type(block.shortcut) for stage in model.stages for block in stage]
    assert shortcuts.count(ZeroPadShortcut) == 2
    assert shortcuts[9] is ZeroPadShortcut and shortcuts[18] is ZeroPadShortcut


def test_forward_and_backward_reach_every_parameter():
    torch.manual_seed(0)
    model = CifarResNet(56)
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 10)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.parameters())
