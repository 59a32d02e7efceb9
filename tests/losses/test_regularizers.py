"""R1 and path-length regularisers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from monai_synth.losses import PathLengthPenalty, r1_penalty


def test_r1_equals_hand_computed_gradient_penalty():
    torch.manual_seed(0)
    a = torch.randn(1, 2, 3, 3)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = (a * x).sum(dim=(1, 2, 3)) + (x**2).sum(dim=(1, 2, 3))  # grad = a + 2x
    penalty = r1_penalty(logits[:, None], x, gamma=3.0)
    expected = 1.5 * ((a + 2 * x.detach()) ** 2).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(penalty, expected)
    penalty.backward()  # create_graph=True: the penalty is differentiable
    torch.testing.assert_close(x.grad, 1.5 * 2 * 2 * (a + 2 * x.detach()) / 4)


def test_r1_needs_grad_enabled_inputs():
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(torch.zeros(2, 1), torch.zeros(2, 1, 2, 2))


def test_path_length_matches_jacobian_definition_and_tracks_mean():
    torch.manual_seed(0)
    b, layers, dim, h = 3, 4, 5, 6
    m = torch.randn(layers * dim, h * h)
    ws = torch.randn(b, layers, dim, requires_grad=True)
    images = (ws.reshape(b, -1) @ m).reshape(b, 1, h, h)  # linear generator: J^T y = M y
    reg = PathLengthPenalty(weight=2.0, decay=0.01)
    torch.manual_seed(1)
    lengths = reg.lengths(images, ws)
    torch.manual_seed(1)
    y = torch.randn(b, 1, h, h) / math.sqrt(h * h)
    jty = (y.reshape(b, -1) @ m.T).reshape(b, layers, dim)
    torch.testing.assert_close(lengths, jty.square().sum(2).mean(1).sqrt())

    torch.manual_seed(1)
    penalty = reg(images, ws)
    a = 0.01 * lengths.detach().mean()  # running mean starts at 0
    torch.testing.assert_close(reg.mean, a)
    torch.testing.assert_close(penalty, 2.0 * (lengths.detach() - a).square().mean())
    torch.manual_seed(1)
    reg(images, ws)
    torch.testing.assert_close(reg.mean, a + 0.01 * (lengths.detach().mean() - a))
    assert "mean" in reg.state_dict()  # saved with checkpoints
