"""Near-duplicate detection in generated sets with perceptual hashes (mode-collapse guard).

Neff et al. (2017) removed generated images that were "almost identical in a batch of samples" with a
perceptual image hash. Here the hash is ``imagehash.phash`` (DCT hash) of each channel and the
distance between two items is the Hamming distance of their hashes, summed over the hashed channels.

Decisions are greedy and order dependent, in the order items are seen: an item is a duplicate when a
*kept* (earlier, non-duplicate) item lies within ``max_distance`` bits of it, and then points to the
nearest such kept item (the earliest on ties). Kept items are therefore pairwise more than
``max_distance`` bits apart, and a duplicate never points to another duplicate.
:func:`find_near_duplicates` (one shot) and :class:`DuplicateFilter` (streaming, resumable) share this
rule and give the same decisions.

Requires the optional ``imagehash`` package (``pip install imagehash`` or ``monai-synth[dedup]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.utils import optional_import

from monai_synth.utils.visualize import to_uint8

imagehash, has_imagehash = optional_import("imagehash")
Image, _ = optional_import("PIL.Image")

__all__ = [
    "perceptual_hash",
    "hash_distance",
    "find_near_duplicates",
    "DuplicateFilter",
    "duplicate_rate",
    "hash_to_text",
    "hash_from_text",
]

_RANGE_TOLERANCE = 1e-3
# Bits set in each byte value: a vectorised popcount for numpy < 2.0, which lacks np.bitwise_count.
_POPCOUNT_U8 = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)


def _require_imagehash() -> None:
    if not has_imagehash:
        raise ImportError(
            "Near-duplicate detection needs the optional 'imagehash' package: pip install imagehash "
            "(or pip install 'monai-synth[dedup]')."
        )


def _check_hash_size(hash_size: int) -> int:
    if isinstance(hash_size, bool) or int(hash_size) != hash_size or hash_size < 2:
        raise ValueError(f"hash_size must be an integer >= 2 (8 gives 64-bit hashes), got {hash_size!r}.")
    return int(hash_size)


def _channels_to_hash(image: np.ndarray | torch.Tensor, image_channels: int | None) -> np.ndarray:
    """``(H, W)`` or ``(C, H, W)`` in [-1, 1] -> float array ``(C', H, W)`` of the channels to hash."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().float().numpy()
    else:
        array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(
            f"perceptual_hash expects one image (H, W) or (C, H, W), got shape {array.shape}; "
            "pass batches as a sequence of items or to find_near_duplicates."
        )
    if image_channels is not None:
        if isinstance(image_channels, bool) or int(image_channels) != image_channels or image_channels < 1:
            raise ValueError(f"image_channels must be None or an integer >= 1, got {image_channels!r}.")
        if image_channels > array.shape[0]:
            raise ValueError(
                f"image_channels={image_channels} but the item has only {array.shape[0]} channels {array.shape}."
            )
        array = array[: int(image_channels)]
    if not np.isfinite(array).all():
        raise ValueError("perceptual_hash: the image contains NaN or infinite values (a diverged generator?).")
    low, high = float(array.min()), float(array.max())
    if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"perceptual_hash expects values in [-1, 1] (the generator's tanh range), got [{low:g}, {high:g}]; "
            "scale real data first, e.g. with NormalizeToRange."
        )
    return array


def perceptual_hash(image: np.ndarray | torch.Tensor, hash_size: int = 8, image_channels: int | None = None) -> Any:
    """DCT perceptual hash (``imagehash.phash``) of one image in [-1, 1].

    Each hashed channel is mapped to 8-bit grey (``-1 -> 0``, ``1 -> 255``) and hashed on its own; the
    per-channel hashes are stacked, so the Hamming distance (``h1 - h2``) sums over channels.

    Args:
        image: ``(H, W)`` or channel-first ``(C, H, W)``, numpy or torch, values in [-1, 1].
        hash_size: side of the hash; ``hash_size**2`` bits per channel (8 -> 64 bits).
        image_channels: hash only the first ``image_channels`` channels, e.g. the image part of a paired
            tensor ``(C + M, H, W)``; ``None`` hashes every channel (image and mask).

    Returns:
        ``imagehash.ImageHash`` with a boolean array ``(C' * hash_size, hash_size)``; ``str()`` gives hex.

    Raises:
        ImportError: ``imagehash`` is not installed.
        ValueError: wrong shape, ``image_channels`` larger than the channel count, NaN values, or values
            outside [-1, 1] (e.g. raw 0..255 data).
    """
    _require_imagehash()
    hash_size = _check_hash_size(hash_size)
    array = _channels_to_hash(image, image_channels)
    grey = to_uint8(array)
    bits = [imagehash.phash(Image.fromarray(channel), hash_size=hash_size).hash for channel in grey]
    return imagehash.ImageHash(np.concatenate(bits, axis=0))


def _hash_bits(h: Any) -> np.ndarray:
    """Flat boolean bits of an ``ImageHash`` or of a boolean array."""
    return np.asarray(getattr(h, "hash", h), dtype=bool).ravel()


def _pack_words(bits: np.ndarray) -> np.ndarray:
    """Flat bits -> ``uint64`` words (zero padded) for vectorised XOR + popcount."""
    packed = np.packbits(bits.astype(np.uint8))
    words = -(-packed.size // 8)
    buffer = np.zeros(words * 8, dtype=np.uint8)
    buffer[: packed.size] = packed
    return buffer.view(np.uint64)


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    """Number of set bits in each row of a ``(N, W)`` uint64 array."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    return _POPCOUNT_U8[np.ascontiguousarray(words).view(np.uint8)].sum(axis=-1)


def hash_distance(a: Any, b: Any) -> int:
    """Hamming distance between two hashes (``ImageHash``, boolean arrays or :class:`DuplicateFilter` hex).

    Raises:
        ValueError: the hashes have different lengths.
    """
    bits_a = _bits_from_hex(a) if isinstance(a, str) else _hash_bits(a)
    bits_b = _bits_from_hex(b) if isinstance(b, str) else _hash_bits(b)
    if bits_a.size != bits_b.size:
        raise ValueError(f"hash_distance: hashes of {bits_a.size} and {bits_b.size} bits cannot be compared.")
    return int(np.count_nonzero(bits_a != bits_b))


def _bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def _bits_from_hex(text: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8)).astype(bool)


def hash_to_text(image_hash: Any) -> str:
    """A JSON-able ``"<num_bits>:<hex>"`` form of an ``ImageHash`` or boolean bits (see :func:`hash_from_text`)."""
    bits = _hash_bits(image_hash)
    return f"{bits.size}:{_bits_to_hex(bits)}"


def hash_from_text(text: str) -> np.ndarray:
    """The boolean bits written by :func:`hash_to_text` (exact length, no byte padding)."""
    num_bits, hex_bits = text.split(":", 1)
    return _bits_from_hex(hex_bits)[: int(num_bits)]


class DuplicateFilter:
    """Streaming near-duplicate filter over a generated set, resumable across shards and restarts.

    Feed items in generation order with :meth:`check` (or :meth:`check_batch`); each call decides at once
    and, when the item is new, remembers its hash. Only kept items are stored (one uint64 word per 64
    bits), and the comparison against all of them is a single vectorised XOR + popcount.

    :meth:`state_dict` returns plain JSON-able data (settings, ids and hex hashes); a filter restored with
    :meth:`load_state_dict` continues with exactly the decisions an uninterrupted run would make.

    Args:
        max_distance: an item within this many differing hash bits of a kept item is a duplicate (0 =
            identical hashes only). Counted over all hashed bits (``channels * hash_size**2``).
        hash_size: see :func:`perceptual_hash`.
        image_channels: see :func:`perceptual_hash` (hash only the image part of paired tensors).

    Raises:
        ValueError: negative ``max_distance`` or bad ``hash_size``.

    Example::

        dedup = DuplicateFilter(max_distance=4, image_channels=1)
        for seed, pair in zip(seeds, pairs):
            is_dup, dup_of, distance = dedup.check(pair, item_id=seed)
    """

    def __init__(self, max_distance: int = 4, hash_size: int = 8, image_channels: int | None = None) -> None:
        if isinstance(max_distance, bool) or int(max_distance) != max_distance or max_distance < 0:
            raise ValueError(f"DuplicateFilter: max_distance must be an integer >= 0 (bits), got {max_distance!r}.")
        self.max_distance = int(max_distance)
        self.hash_size = _check_hash_size(hash_size)
        self.image_channels = image_channels
        self.num_checked = 0
        self._ids: list[Any] = []
        self._hex: list[str] = []
        self._words = np.zeros((0, 0), dtype=np.uint64)
        self._num_bits: int | None = None

    def __len__(self) -> int:
        """Number of kept (non-duplicate) items."""
        return len(self._ids)

    @property
    def kept_ids(self) -> list[Any]:
        """Ids of the kept items, in the order they were seen."""
        return list(self._ids)

    def check(self, image: np.ndarray | torch.Tensor, item_id: Any = None) -> tuple[bool, Any, int | None]:
        """Hash ``image`` and decide whether it nearly duplicates a kept item; remember it if not.

        Args:
            image: ``(H, W)`` or ``(C, H, W)`` in [-1, 1] (see :func:`perceptual_hash`).
            item_id: JSON-able id stored for this item (seed, file name, ...); defaults to its position
                in the stream (``num_checked`` before the call), which matches the indices returned by
                :func:`find_near_duplicates`.

        Returns:
            ``(is_duplicate, duplicate_of_id, distance)``: ``duplicate_of_id`` is the id of the nearest kept
            item when a duplicate, else ``None``; ``distance`` is the Hamming distance to the nearest kept
            item (``None`` when nothing is kept yet).
        """
        return self.check_hash(self.image_hash(image), item_id)

    def image_hash(self, image: np.ndarray | torch.Tensor) -> Any:
        """The perceptual hash :meth:`check` would compare (this filter's ``hash_size`` and ``image_channels``)."""
        return perceptual_hash(image, self.hash_size, self.image_channels)

    def check_hash(self, image_hash: Any, item_id: Any = None) -> tuple[bool, Any, int | None]:
        """Like :meth:`check` for a precomputed hash (``ImageHash``, boolean array or hex from this class)."""
        bits = _bits_from_hex(image_hash) if isinstance(image_hash, str) else _hash_bits(image_hash)
        if isinstance(image_hash, str) and self._num_bits is not None:
            bits = bits[: self._num_bits]
        if self._num_bits is None:
            self._num_bits = bits.size
        elif bits.size != self._num_bits:
            raise ValueError(
                f"DuplicateFilter: hash of {bits.size} bits but the filter holds {self._num_bits}-bit hashes; "
                "keep hash_size and image_channels (and the channel count of the items) fixed within a run."
            )
        item_id = self.num_checked if item_id is None else item_id
        self.num_checked += 1
        words = _pack_words(bits)
        distance: int | None = None
        if len(self._ids):
            distances = _popcount_rows(np.bitwise_xor(self._words[: len(self._ids)], words))
            nearest = int(np.argmin(distances))  # first minimum: the earliest kept item on ties
            distance = int(distances[nearest])
            if distance <= self.max_distance:
                return True, self._ids[nearest], distance
        self._remember(item_id, words, _bits_to_hex(bits))
        return False, None, distance

    def check_batch(
        self, images: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor, ids: Sequence[Any] | None = None
    ) -> list[tuple[bool, Any, int | None]]:
        """:meth:`check` each item of ``images`` (a sequence or a ``(B, C, H, W)`` batch) in order.

        Raises:
            ValueError: ``ids`` given with a different length than ``images``.
        """
        if ids is not None and len(ids) != len(images):
            raise ValueError(f"DuplicateFilter.check_batch: {len(ids)} ids for {len(images)} images.")
        return [self.check(image, None if ids is None else ids[i]) for i, image in enumerate(images)]

    def _remember(self, item_id: Any, words: np.ndarray, hex_hash: str) -> None:
        count = len(self._ids)
        if count == self._words.shape[0]:  # full (or empty): double the capacity, amortised O(1) appends
            grown = np.zeros((max(16, 2 * count), words.size), dtype=np.uint64)
            if count:
                grown[:count] = self._words[:count]
            self._words = grown
        self._words[count] = words
        self._ids.append(item_id)
        self._hex.append(hex_hash)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: settings, ``num_checked``, ``num_bits``, kept ``ids`` and their ``hashes`` (hex)."""
        return {
            "max_distance": self.max_distance,
            "hash_size": self.hash_size,
            "image_channels": self.image_channels,
            "num_checked": self.num_checked,
            "num_bits": self._num_bits,
            "ids": list(self._ids),
            "hashes": list(self._hex),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (e.g. read back from JSON) to resume a run.

        Raises:
            ValueError: the stored settings differ from this filter's, or ids and hashes do not pair up.
        """
        for setting in ("max_distance", "hash_size", "image_channels"):
            if setting in state and state[setting] != getattr(self, setting):
                raise ValueError(
                    f"DuplicateFilter.load_state_dict: stored {setting}={state[setting]!r} but this filter has "
                    f"{setting}={getattr(self, setting)!r}; resume with the settings of the original run."
                )
        ids, hashes = list(state.get("ids", [])), list(state.get("hashes", []))
        if len(ids) != len(hashes):
            raise ValueError(f"DuplicateFilter.load_state_dict: {len(ids)} ids but {len(hashes)} hashes.")
        num_bits = state.get("num_bits")
        self._ids, self._hex, self._words = [], [], np.zeros((0, 0), dtype=np.uint64)
        self._num_bits = None if num_bits is None else int(num_bits)
        for item_id, hex_hash in zip(ids, hashes, strict=False):
            bits = _bits_from_hex(hex_hash)
            bits = bits if self._num_bits is None else bits[: self._num_bits]
            self._remember(item_id, _pack_words(bits), _bits_to_hex(bits))
        self.num_checked = int(state.get("num_checked", len(ids)))


def find_near_duplicates(
    images: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    max_distance: int = 4,
    hash_size: int = 8,
    image_channels: int | None = None,
) -> list[int | None]:
    """For each item, the index of the earlier kept item it nearly duplicates, or ``None``.

    Args:
        images: sequence of ``(H, W)`` / ``(C, H, W)`` items, or a batch ``(N, C, H, W)``, values in [-1, 1].
        max_distance, hash_size, image_channels: see :class:`DuplicateFilter`.

    Returns:
        list of length ``N``; ``None`` for kept items, else the index of the nearest kept earlier item.

    Example::

        flags = find_near_duplicates(fake_images, max_distance=4)
        unique = [img for img, dup in zip(fake_images, flags) if dup is None]
    """
    dedup = DuplicateFilter(max_distance=max_distance, hash_size=hash_size, image_channels=image_channels)
    return [dup_of for _, dup_of, _ in dedup.check_batch(images)]


def duplicate_rate(flags: Sequence[bool | int | None]) -> float:
    """Fraction of items flagged as duplicates.

    Args:
        flags: per item either a bool (``True`` = duplicate, e.g. the first element of
            :meth:`DuplicateFilter.check`) or the output of :func:`find_near_duplicates` (``None`` = kept,
            an index = duplicate).

    Returns:
        duplicates / items in [0, 1]; 0.0 for an empty sequence.
    """
    flags = list(flags)
    if not flags:
        return 0.0
    duplicates = sum(bool(f) if isinstance(f, (bool, np.bool_)) else f is not None for f in flags)
    return duplicates / len(flags)
