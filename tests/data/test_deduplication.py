"""Tests for perceptual-hash near-duplicate detection of generated sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_synth.data import deduplication
from monai_synth.data.deduplication import (
    DuplicateFilter,
    duplicate_rate,
    find_near_duplicates,
    hash_distance,
    perceptual_hash,
)
from monai_synth.data.phantom import generate_phantom

pytest.importorskip("imagehash")

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _random_images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # smooth random fields look more like images than white noise and hash stably
    coarse = rng.uniform(-1, 1, (n, 1, size // 4, size // 4)).astype(np.float32)
    return [np.kron(c, np.ones((1, 4, 4), dtype=np.float32)) for c in coarse]


def _noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), -1, 1).astype(np.float32)


def _lung_window(hu: np.ndarray) -> np.ndarray:
    return np.clip((hu + 600.0) / 750.0, -1, 1).astype(np.float32)


def test_perceptual_hash_basics():
    image = _random_images(1)[0]
    h = perceptual_hash(image)
    assert h.hash.shape == (8, 8) and len(str(h)) == 16
    assert h - perceptual_hash(torch.as_tensor(image)) == 0  # numpy and torch agree
    assert h - perceptual_hash(image[0]) == 0  # (H, W) == (1, H, W)
    assert perceptual_hash(image, hash_size=16).hash.shape == (16, 16)
    pair = np.concatenate([image, -image])
    assert perceptual_hash(pair).hash.shape == (16, 8)  # one 64-bit hash per channel
    assert perceptual_hash(pair, image_channels=1) - h == 0
    assert hash_distance(h, str(h)) == 0


def test_identical_and_noised_copies_flagged_random_images_not():
    images = _random_images(8)
    items = [*images, images[3].copy(), _noisy(images[5], 0.03, seed=1), _noisy(images[0], 0.03, seed=2)]
    flags = find_near_duplicates(items, max_distance=4)
    assert flags == [None] * 8 + [3, 5, 0]
    assert duplicate_rate(flags) == pytest.approx(3 / 11)
    batch = torch.as_tensor(np.stack(items))  # a (N, C, H, W) batch works too
    assert find_near_duplicates(batch, max_distance=4) == flags


def test_different_phantoms_not_flagged_noised_copies_are():
    phantoms = [_lung_window(generate_phantom(seed, image_size=64)[0]) for seed in range(6)]
    items = [*phantoms, _noisy(phantoms[2], 0.02, seed=3), phantoms[4].copy()]
    # phantoms share one anatomy template: 256-bit hashes separate them (distinct >= ~22 bits, noisy <= ~8)
    flags = find_near_duplicates(items, max_distance=12, hash_size=16)
    assert flags == [None] * 6 + [2, 4]


def test_image_channels_selects_what_is_compared():
    image = _random_images(1)[0]
    blob_a = -np.ones_like(image)
    blob_a[:, 4:14, 4:14] = 1
    blob_b = -np.ones_like(image)
    blob_b[:, 18:30, 16:28] = 1
    pair_a, pair_b = np.concatenate([image, blob_a]), np.concatenate([image, blob_b])
    assert find_near_duplicates([pair_a, pair_b], image_channels=1) == [None, 0]  # same image
    assert find_near_duplicates([pair_a, pair_b]) == [None, None]  # masks differ


def test_duplicates_point_to_kept_items_nearest_first():
    rng = np.random.default_rng(0)
    bits = rng.random((300, 64)) < 0.5
    # plant near copies (1-3 flipped bits) of earlier items
    for i in range(100, 300, 7):
        source = rng.integers(0, i)
        bits[i] = bits[source]
        bits[i, rng.choice(64, size=rng.integers(0, 4), replace=False)] ^= True
    dedup = DuplicateFilter(max_distance=3)
    results = [dedup.check_hash(b) for b in bits]
    # brute force reference in plain Python
    kept: list[int] = []
    for i, (is_dup, dup_of, distance) in enumerate(results):
        distances = [int(np.count_nonzero(bits[i] != bits[k])) for k in kept]
        best = int(np.argmin(distances)) if distances else None
        expected_dup = best is not None and distances[best] <= 3
        assert is_dup == expected_dup
        assert distance == (distances[best] if distances else None)
        assert dup_of == (kept[best] if expected_dup else None)
        if not expected_dup:
            kept.append(i)
    assert dedup.kept_ids == kept and len(dedup) == len(kept) and dedup.num_checked == 300
    assert sum(r[0] for r in results) >= 25


def test_streaming_state_round_trip_matches_one_shot():
    images = _random_images(12)
    items = [images[i % 9] if i % 4 else _noisy(images[i % 9], 0.02, seed=i) for i in range(24)]
    one_shot = find_near_duplicates(items, max_distance=4)
    assert duplicate_rate(one_shot) > 0.4  # the set really has duplicates across shards
    decisions: list[int | None] = []
    state = None
    for shard in (items[:7], items[7:15], items[15:]):
        dedup = DuplicateFilter(max_distance=4)
        if state is not None:
            dedup.load_state_dict(json.loads(state))  # as a resumed run would read it back
        decisions += [dup_of for _, dup_of, _ in dedup.check_batch(shard)]
        state = json.dumps(dedup.state_dict())
    assert decisions == one_shot
    saved = json.loads(state)
    assert all(isinstance(h, str) and len(h) == 16 for h in saved["hashes"]) and saved["num_checked"] == 24
    named = DuplicateFilter(max_distance=4)
    results = named.check_batch(items[:10], ids=[f"seed_{i}" for i in range(10)])
    assert [r[1] for r in results] == [None if d is None else f"seed_{d}" for d in one_shot[:10]]


def test_errors(monkeypatch):
    image = _random_images(1)[0]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        perceptual_hash(image * 255)
    with pytest.raises(ValueError, match="NaN"):
        perceptual_hash(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="one image"):
        perceptual_hash(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="image_channels=3"):
        perceptual_hash(image, image_channels=3)
    with pytest.raises(ValueError, match="hash_size"):
        perceptual_hash(image, hash_size=1)
    with pytest.raises(ValueError, match="max_distance"):
        DuplicateFilter(max_distance=-1)
    dedup = DuplicateFilter()
    dedup.check(image)
    with pytest.raises(ValueError, match="bits"):
        dedup.check(np.concatenate([image, image]))  # 128-bit hash into a 64-bit filter
    with pytest.raises(ValueError, match="max_distance=4"):
        DuplicateFilter(max_distance=2).load_state_dict(dedup.state_dict())
    with pytest.raises(ValueError, match="ids"):
        dedup.check_batch([image], ids=[1, 2])
    monkeypatch.setattr(deduplication, "has_imagehash", False)
    with pytest.raises(ImportError, match="pip install imagehash"):
        perceptual_hash(image)


def test_duplicate_rate_and_popcount_fallback():
    assert duplicate_rate([None, 0, None, 2]) == 0.5
    assert duplicate_rate([False, True, True, True]) == 0.75
    assert duplicate_rate([]) == 0.0
    words = np.random.default_rng(0).integers(0, 2**63, size=(50, 3), dtype=np.uint64)
    reference = np.array([sum(bin(int(w)).count("1") for w in row) for row in words])
    np.testing.assert_array_equal(deduplication._popcount_rows(words), reference)
    lut = deduplication._POPCOUNT_U8[words.view(np.uint8)].sum(axis=-1)  # numpy < 2 path
    np.testing.assert_array_equal(lut, reference)


@pytest.mark.shared_data
def test_real_chest_xrays_not_flagged_copies_are():
    from PIL import Image

    files = sorted((SHARED_DATA / "cxr_shenzhen" / "images").glob("*.png"))[:10]
    if not files:
        pytest.skip(f"shared data not found at {SHARED_DATA} (cxr_shenzhen/images)")
    xrays = [np.asarray(Image.open(f).convert("L").resize((128, 128)), dtype=np.float32) / 127.5 - 1 for f in files]
    items = [*xrays, _noisy(xrays[1], 0.02, seed=0), xrays[7].copy()]
    assert find_near_duplicates(items) == [None] * 10 + [1, 7]
