"""Pixel-classifier ensemble: the factored feature path equals upsample-and-concatenate; vote and JS values."""

from __future__ import annotations

import math

import pytest
import torch

from monai_synth.networks.nets import StyleGAN2Generator
from monai_synth.networks.nets.pixel_classifier import (
    PixelClassifierEnsemble,
    jensen_shannon_disagreement,
    majority_vote,
)


def _features(channels=(6, 6, 5, 5, 3, 3), sizes=(4, 4, 8, 8, 16, 16), batch=2):
    torch.manual_seed(0)
    return [torch.randn(batch, c, s, s) for c, s in zip(channels, sizes)]


def _ensemble(mode="bilinear"):
    torch.manual_seed(1)
    ens = PixelClassifierEnsemble(
        [6, 6, 5, 5, 3, 3], num_classes=4, num_members=3, hidden_channels=(8, 5), upsample_mode=mode
    )
    with torch.no_grad():  # non-trivial batch-norm statistics for eval mode
        for bn in (ens.bn1, ens.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return ens


@pytest.mark.parametrize("order", ["cost", "project_first", "upsample_first"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [16, 32])
def test_factored_path_equals_upsample_and_concatenate(mode, size, order, monkeypatch):
    features = _features()
    ens = _ensemble(mode).eval()
    if order != "cost":  # force one order for every map ("cost": the cost model decides)
        monkeypatch.setattr(ens, "_project_first", lambda r, c, s: order == "project_first")
    with torch.no_grad():
        reference = ens.reference_forward(features, size)
        chunked = ens(features, size, rows_per_chunk=5)  # row chunks that do not divide the size
    assert chunked.shape == reference.shape == (3, 2, 4, size, size)
    torch.testing.assert_close(chunked, reference, rtol=1e-4, atol=1e-4)
    # training mode: batch statistics over the same pixels (a chunk is one whole image) give the same result
    ens.train()
    one = [f[1:] for f in features]
    torch.testing.assert_close(
        ens(one, size, rows_per_chunk=size), ens.reference_forward(one, size), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_projected_rows_slide_through_a_small_window(mode, monkeypatch):
    """Inference projects a band of source rows at a time into a window smaller than the map: same result."""
    from monai_synth.networks.nets import pixel_classifier

    monkeypatch.setattr(pixel_classifier, "_PROJECT_PIXELS", 8)  # 1 row of the 8 x 8 maps, half a 16 x 16 row
    features = _features()
    ens = _ensemble(mode).eval()
    monkeypatch.setattr(ens, "_project_first", lambda r, c, s: True)
    with torch.no_grad():
        torch.testing.assert_close(
            ens(features, 40, rows_per_chunk=3), ens.reference_forward(features, 40), rtol=1e-4, atol=1e-4
        )


def test_order_choice_projects_small_maps_first():
    # a StyleGAN2 at 256 x 256 (channel_base 2048, channel_max 128: two maps per resolution, channels
    # summed per resolution) and the papers' ensemble width
    sizes = [4, 8, 16, 32, 64, 128, 256]
    channels = [256, 256, 256, 128, 64, 32, 16]
    ens = PixelClassifierEnsemble([c // 2 for c in channels for _ in range(2)], num_classes=2)
    choice = [ens._project_first(r, c, 256) for r, c in zip(sizes, channels)]
    # banded upsampling of the projected channels costs a few products per output: maps with many channels
    # are projected first; at 128 x 128 32 channels are cheaper to upsample than 2560 projected ones
    assert choice == [True] * 5 + [False] * 2
    assert ens._project_first(128, 256, 256)  # the paper's width (channel_max 512): 256 channels at 128 x 128


def test_pixel_batches_match_the_full_map_and_train():
    features = _features()
    ens = _ensemble().eval()
    coords = torch.randint(0, 32, (2, 50, 2))
    with torch.no_grad():
        full = ens(features, 32)  # (n, B, K, S, S)
        picked = ens.forward_pixels(features, coords, 32).reshape(3, 2, 50, 4)
    b = torch.arange(2)[:, None]
    expected = full.permute(0, 1, 3, 4, 2)[:, b, coords[..., 0], coords[..., 1]]  # (n, B, P, K)
    torch.testing.assert_close(picked, expected, rtol=1e-4, atol=1e-4)
    ens.train()
    labels = (features[-1][:, 0] > 0).long()  # a learnable target at 16 x 16
    opt = torch.optim.Adam(ens.parameters(), 1e-2)
    grid = (
        torch.stack(torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij"), -1)
        .reshape(1, -1, 2)
        .expand(2, -1, -1)
    )
    target = labels.reshape(-1).repeat(3)
    first = None
    for _ in range(60):
        logits = ens.forward_pixels(features, grid, 16)  # (n, B * P, K)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 4), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


def test_members_differ_and_generator_features_fit():
    g = StyleGAN2Generator(16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8).eval()
    out = g(torch.randn(2, 8), return_features=True)
    ens = PixelClassifierEnsemble(g.feature_channels, num_classes=3, num_members=4, hidden_channels=(8, 4)).eval()
    assert not torch.equal(ens.w1[0], ens.w1[1]) and not torch.equal(ens.w3[0], ens.w3[1])
    with torch.no_grad():
        logits = ens(out.features, 16)
    assert logits.shape == (4, 2, 3, 16, 16) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="channels"):
        ens(out.features[:-1], 16)


def test_majority_vote_and_jensen_shannon_on_constructed_values():
    # 3 members, 2 pixels, 3 classes: pixel 0 votes (2, 2, 0) -> 2; pixel 1 votes (0, 1, 2) -> tie -> 0
    logits = torch.tensor([[[0.0, 0, 5], [9, 0, 0]], [[0, 1, 4], [0, 3, 0]], [[7, 0, 0], [0, 0, 2]]])
    assert majority_vote(logits).tolist() == [2, 0]
    same = torch.tensor([[0.2, 0.8]]).expand(4, 1, 2)
    assert jensen_shannon_disagreement(same).abs().item() < 1e-6
    opposite = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two certain members that disagree: log 2
    assert jensen_shannon_disagreement(opposite).item() == pytest.approx(math.log(2), abs=1e-5)
    mixed = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])
    m = torch.tensor([0.7, 0.3])
    h = lambda p: -(p * p.log()).sum()  # noqa: E731
    expected = h(m) - (h(torch.tensor([0.9, 0.1])) + h(torch.tensor([0.5, 0.5]))) / 2
    assert jensen_shannon_disagreement(mixed).item() == pytest.approx(expected.item(), abs=1e-6)


def test_bad_settings():
    with pytest.raises(ValueError, match="feature_channels"):
        PixelClassifierEnsemble([], 3)
    with pytest.raises(ValueError, match="num_classes"):
        PixelClassifierEnsemble([4], 1)
    with pytest.raises(ValueError, match="upsample_mode"):
        PixelClassifierEnsemble([4], 3, upsample_mode="bicubic")
