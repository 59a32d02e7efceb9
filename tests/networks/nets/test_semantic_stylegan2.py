"""SemanticStyleGAN2Generator: image + mask-logit shapes, the paired encoding, and D_m's gradient kept off the image branch."""

from __future__ import annotations

import pytest
import torch

from monai_synth.losses import g_nonsaturating_loss
from monai_synth.networks.nets import SemanticStyleGAN2Generator, StyleGAN2Discriminator, encode_mask_logits
from monai_synth.utils.export import export_generator, load_generator


def _generator(k: int, size: int = 16) -> SemanticStyleGAN2Generator:
    torch.manual_seed(0)
    return SemanticStyleGAN2Generator(size, image_channels=1, num_classes=k, z_dim=16, w_dim=16, mapping_layers=2,
                                      channel_base=128, channel_max=16)  # fmt: skip


@pytest.mark.parametrize(("k", "mask_channels"), [(2, 1), (6, 6)])
def test_image_and_mask_logit_shapes_and_paired_output(k: int, mask_channels: int) -> None:
    g = _generator(k)
    ws = g.map(torch.randn(3, 16))
    image, logits = g.synthesize(ws, noise_mode="const")
    assert image.shape == (3, 1, 16, 16) and logits.shape == (3, k, 16, 16)
    pair = g(torch.randn(3, 16))
    assert pair.shape == (3, 1 + mask_channels, 16, 16) and g.out_channels == 1 + mask_channels
    # the mask part is the soft paired encoding of the logits, inside [-1, 1]
    same = g.synthesis(ws, noise_mode="const")
    assert torch.allclose(same[:, :1], image) and torch.allclose(same[:, 1:], encode_mask_logits(logits))
    assert same[:, 1:].abs().max() <= 1
    # the paired-generator contract: config round trip and the mode the factory checks
    config = g.get_config()
    assert config["mode"] == "paired" and config["mask_channels"] == mask_channels and config["num_classes"] == k
    rebuilt = SemanticStyleGAN2Generator(**config)
    rebuilt.load_state_dict(g.state_dict())


def test_mask_logits_accumulate_over_every_resolution() -> None:
    g = _generator(3)
    ws = g.map(torch.randn(2, 16))
    _, before = g.synthesize(ws, noise_mode="const")
    for to_mask in g.to_masks:  # each level contributes: zeroing any one changes the logits
        saved = to_mask.bias.detach().clone()
        with torch.no_grad():
            to_mask.bias.add_(1.0)
        _, after = g.synthesize(ws, noise_mode="const")
        assert not torch.allclose(before, after)
        with torch.no_grad():
            to_mask.bias.copy_(saved)


def test_encoding_of_a_confident_prediction_is_the_label_encoding() -> None:
    logits = torch.full((1, 2, 4, 4), -30.0)
    logits[:, 1, :2] = 30.0  # top half foreground
    logits[:, 0, 2:] = 30.0
    encoded = encode_mask_logits(logits)
    assert encoded.shape == (1, 1, 4, 4)
    assert torch.allclose(encoded[0, 0, :2], torch.ones(2, 4)) and torch.allclose(encoded[0, 0, 2:], -torch.ones(2, 4))


@pytest.mark.parametrize("detach", [True, False])
def test_d_m_gradient_does_not_reach_the_image_branch(detach: bool) -> None:
    g = _generator(2)
    d_m = StyleGAN2Discriminator(16, image_channels=1, mask_channels=1, mode="paired", channel_base=128,
                                 channel_max=16)  # fmt: skip
    ws = g.map(torch.randn(4, 16))
    image, logits = g.synthesize(ws, noise_mode="random", detach_mask_input=detach)
    # what SemanticGANTrainer's generator step feeds D_m: the detached image and the soft mask
    loss = g_nonsaturating_loss(d_m(torch.cat([image.detach(), encode_mask_logits(logits)], dim=1)))
    image_branch = g.image_branch_parameters()
    grads = torch.autograd.grad(loss, image_branch + list(g.to_masks.parameters()), allow_unused=True)
    image_grads, mask_grads = grads[: len(image_branch)], grads[len(image_branch) :]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in mask_grads)
    to_image_ids = {id(p) for p in g.to_images.parameters()}
    for p, gr in zip(image_branch, image_grads):
        if detach or id(p) in to_image_ids:  # the image outputs never see D_m; with detach nothing but to_masks
            assert gr is None or gr.abs().sum() == 0
    if not detach:  # the reference-code variant: the mask loss also trains the shared synthesis layers
        assert any(gr is not None and gr.abs().sum() > 0 for gr in image_grads)


def test_export_round_trip_and_bad_settings(tmp_path) -> None:
    g = _generator(2)
    path = export_generator(g, {"generator_class": "monai_synth.networks.nets.SemanticStyleGAN2Generator",
                                "generator": g.get_config(), "data": {"image_channels": 1, "num_classes": 2}},
                            tmp_path / "generator.pt")  # fmt: skip
    loaded, _ = load_generator(path, bundle="semanticgan")
    z = torch.randn(2, 16)
    assert torch.allclose(loaded(z), g.eval()(z))
    with pytest.raises(ValueError, match="datasetgan"):
        load_generator(path, bundle="datasetgan")
    with pytest.raises(ValueError, match="num_classes"):
        SemanticStyleGAN2Generator(16, num_classes=1)
    with pytest.raises(ValueError, match="mask channel"):
        SemanticStyleGAN2Generator(16, num_classes=3, mask_channels=1)
