"""Conditional StyleGAN2 (C-SG, Vu et al.): mask at every synthesis layer, mask twice in the discriminator."""

from __future__ import annotations

import pytest
import torch

from monai_synth.networks.nets import (
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    encode_condition,
    mode_channel_range,
    resize_condition,
)

SMALL = {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 256, "channel_max": 16}


def _nets(size=16, mask_channels=1):
    torch.manual_seed(0)
    g = StyleGAN2Generator(size, 1, mask_channels, "conditional", **SMALL)
    d = StyleGAN2Discriminator(size, 1, mask_channels, "conditional", channel_base=256, channel_max=16)
    return g, d


def _labels(num_classes, size=16, batch=2, seed=0):
    return torch.randint(0, num_classes, (batch, 1, size, size), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("num_classes", "mask_channels"), [(2, 1), (6, 6)])
def test_shapes_and_gradients_reach_every_parameter(num_classes, mask_channels):
    g, d = _nets(16, mask_channels)
    labels = _labels(num_classes)
    mask = encode_condition(labels, mask_channels)
    assert mask.shape == (2, mask_channels, 16, 16) and set(mask.unique().tolist()) <= {-1.0, 1.0}
    image = g(torch.randn(2, 16), mask=labels)  # integer labels are encoded by the generator
    assert image.shape == (2, 1, 16, 16)
    logits = d(torch.cat([image, mask], 1))
    assert logits.shape == (2, 1) and mode_channel_range("conditional", 1, mask_channels) == (0, 1 + mask_channels)
    logits.sum().backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        if name.endswith("noise.strength"):
            continue  # starts at 0 and multiplies noise: its gradient may be 0 by construction at init
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert g.get_config()["mode"] == "conditional" and g.get_config()["condition_resampling"] == "area"


def test_encoded_and_integer_masks_agree_and_one_mask_is_shared():
    g, _ = _nets(16, 6)
    g.eval()
    labels = _labels(6, batch=1)
    z = torch.randn(3, 16)
    a = g(z, mask=labels)
    torch.testing.assert_close(a, g(z, mask=encode_condition(labels, 6)))
    torch.testing.assert_close(a, g(z, mask=labels.expand(3, -1, -1, -1)))
    assert not torch.allclose(a[0], a[1])  # the latent changes the appearance for one mask
    out = g(z, mask=labels, return_features=True)
    torch.testing.assert_close(out.image, a)
    assert [f.shape[1] for f in out.features] == g.feature_channels  # the layers' own maps, no mask channels


def test_changing_the_mask_changes_the_image_where_it_changed():
    torch.manual_seed(0)
    g = StyleGAN2Generator(64, 1, 1, "conditional", **SMALL).eval()
    z = torch.randn(4, 16)
    before = torch.zeros(4, 1, 64, 64, dtype=torch.long)
    after = before.clone()
    after[..., :16, :16] = 1  # a new structure in the top-left corner
    diff = (g(z, mask=after) - g(z, mask=before)).abs()
    changed = diff[..., :16, :16].mean()
    far = diff[..., 48:, 48:].mean()  # the opposite corner
    assert changed > 0 and changed > 5 * far
    assert torch.equal(g(z, mask=before), g(z, mask=before))  # eval mode: const noise, deterministic


def test_truncation_zero_gives_one_image_per_mask():
    g, _ = _nets(16, 1)
    g.train()
    for _ in range(3):
        g.map(torch.randn(8, 16))
    g.eval()
    labels = _labels(2, batch=1)
    out = g(torch.randn(4, 16), mask=labels, truncation_psi=0.0)
    torch.testing.assert_close(out, out[:1].expand_as(out))
    mixed = g.map(torch.randn(4, 16), style_mixing_prob=1.0, generator=torch.Generator().manual_seed(1))
    assert g.synthesis(mixed, mask=labels).shape == (4, 1, 16, 16)


def test_discriminator_receives_the_mask_at_from_image_and_before_every_block():
    _, d = _nets(32, 6)
    labels = _labels(6, size=32)
    mask = encode_condition(labels, 6)
    pair = torch.cat([torch.rand(2, 1, 32, 32) * 2 - 1, mask], 1)
    seen = []
    d.from_image.register_forward_pre_hook(lambda m, args: seen.append(("from_image", args[0])))
    for block in d.blocks:
        block.register_forward_pre_hook(lambda m, args: seen.append(("block", args[0])))
    d(pair)
    assert [name for name, _ in seen] == ["from_image"] + ["block"] * len(d.blocks) and len(d.blocks) == 3
    for _, x in seen:  # the last 6 channels of every input are the mask at that input's resolution
        torch.testing.assert_close(x[:, -6:], resize_condition(mask, x.shape[-1]))
    assert [x.shape[-1] for _, x in seen] == [32, 32, 16, 8]


def test_bad_masks_are_refused_with_what_is_wrong():
    g, _ = _nets(16, 1)
    z = torch.randn(2, 16)
    with pytest.raises(ValueError, match="needs the label mask"):
        g(z)
    with pytest.raises(ValueError, match="trained at 16 x 16"):
        g(z, mask=torch.zeros(2, 1, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="labels 0..3 but the generator was trained on 2 classes"):
        g(z, mask=torch.arange(4).repeat_interleave(64).reshape(1, 1, 16, 16))
    with pytest.raises(ValueError, match="3 channels but the generator was trained on 1"):
        g(z, mask=torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="3 masks for 2 latents"):
        g(z, mask=torch.zeros(3, 1, 16, 16))
    unconditional = StyleGAN2Generator(16, 1, 1, "paired", **SMALL)
    with pytest.raises(ValueError, match="paired-mode generator takes no mask"):
        unconditional(z, mask=torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="condition_resampling"):
        StyleGAN2Generator(16, 1, 1, "conditional", condition_resampling="bilinear", **SMALL)
