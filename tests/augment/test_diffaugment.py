"""Paired DiffAugment: geometry moves image and mask together, colour touches the image only, gradients flow."""

from __future__ import annotations

import pytest
import torch

from monai_synth.augment import PairedAugmentPipe, PairedDiffAugment, select_discriminator_augment


def _squares(b: int = 6, size: int = 16) -> torch.Tensor:
    """Image = mask = +1 inside a square, -1 outside (never 0, so a 0 in the image marks a filled pixel)."""
    x = torch.full((b, 2, size, size), -1.0)
    for i in range(b):
        x[i, :, 2 + i : 9 + i, 3:12] = 1.0
    return x


def test_translation_and_cutout_move_image_and_mask_together():
    torch.manual_seed(0)
    x = _squares()
    out = PairedDiffAugment(image_channels=1, policy="translation,cutout")(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    filled = out[:, 0] == 0  # uncovered by the shift or inside the cut-out box
    assert filled.any()
    assert torch.equal(out[:, 1][filled], torch.full_like(out[:, 1][filled], -1.0))  # mask filled with background
    assert torch.equal(out[:, 0][~filled], out[:, 1][~filled])  # everywhere else the pair is still aligned
    # the mask stays a valid binary mask
    assert set(torch.unique(out[:, 1]).tolist()) <= {-1.0, 1.0}


def test_translation_shifts_by_whole_pixels_within_the_ratio():
    torch.manual_seed(1)
    x = _squares(b=8)
    out = PairedDiffAugment(image_channels=1, policy="translation", translation_ratio=0.125)(x)
    for i in range(x.shape[0]):
        fg_in = torch.nonzero(x[i, 1] > 0).float().mean(0)
        fg_out = torch.nonzero(out[i, 1] > 0).float().mean(0)
        shift = fg_out - fg_in  # the square may be clipped at the border: the centroid moves by at most 2 px
        assert shift.abs().max() <= 2 + 1e-6


def test_cutout_fills_one_hot_masks_with_background():
    torch.manual_seed(2)
    x = torch.full((4, 4, 16, 16), -1.0)  # 1 image channel + 3 one-hot mask channels (background first)
    x[:, 0] = 0.5
    x[:, 2] = 1.0  # every pixel is class 1
    out = PairedDiffAugment(image_channels=1, policy="cutout")(x)
    box = out[:, 0] == 0
    assert box.flatten(1).sum(1).min() > 0  # every sample lost a box
    assert torch.all(out[:, 1][box] == 1.0) and torch.all(out[:, 2][box] == -1.0) and torch.all(out[:, 3][box] == -1)
    assert torch.equal(out[:, 1:].sum(1), torch.full_like(out[:, 1], -1.0))  # exactly one channel on everywhere


def test_color_changes_the_image_channels_only():
    torch.manual_seed(3)
    x = _squares() * 0.5
    x[:, 1] = x[:, 1].sign()
    out = PairedDiffAugment(image_channels=1, policy="color")(x)
    assert torch.equal(out[:, 1], x[:, 1])
    assert not torch.allclose(out[:, 0], x[:, 0])
    mask_only = PairedDiffAugment(image_channels=0, policy="color")(x)
    assert torch.equal(mask_only, x)


def test_the_full_policy_is_differentiable():
    aug = PairedDiffAugment(image_channels=1)
    x = (torch.rand(3, 2, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)

    def fixed_draw(inp: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(4)  # the same random shifts / boxes / strengths in every call of gradcheck
        return aug(inp)

    assert torch.autograd.gradcheck(fixed_draw, (x,), eps=1e-6, atol=1e-5)
    fixed_draw(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_off_is_the_identity_and_switches_are_checked():
    x = _squares()
    assert PairedDiffAugment(1, policy="")(x) is x
    ada, diff = PairedAugmentPipe(1), PairedDiffAugment(1)
    assert select_discriminator_augment(False, 0.0, False, ada, diff) is None  # Neff et al.
    assert select_discriminator_augment(True, 0.0, False, ada, diff) is ada
    assert select_discriminator_augment(False, 0.2, False, ada, diff) is ada
    assert select_discriminator_augment(False, 0.0, True, ada, diff) is diff
    with pytest.raises(ValueError, match="--ada False --diffaugment True"):
        select_discriminator_augment(True, 0.0, True, ada, diff)
    with pytest.raises(ValueError, match="unknown policy"):
        PairedDiffAugment(1, policy="color,zoom")
    with pytest.raises(ValueError, match="image_channels"):
        PairedDiffAugment(3)(x)
