"""Patient-level train/validation/test splits, k-fold cross-validation and datalist writing.

Splits are made over *groups* (``case_id`` by default: one patient or volume), never over items, so
all slices of one volume land in the same split and nothing leaks from training into testing. They
are deterministic for a seed and do not depend on the order of the input items: groups are sorted
before a seeded permutation assigns them. Write them with :func:`write_datalist` so a study can be
reproduced with ``monai.data.load_decathlon_datalist``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_synth.data.datalist import _format_names
from monai_synth.utils.io import write_json_atomic

__all__ = ["split_datalist", "kfold_datalist", "write_datalist", "check_no_leakage", "file_digest"]

_PATH_KEYS = ("image", "label")


def _group_items(items: Sequence[dict[str, Any]], group_key: str) -> tuple[list[Any], dict[Any, list[dict]]]:
    """Groups sorted by name, and their items sorted so that input order does not matter."""
    if not items:
        raise ValueError("Cannot split an empty list of items.")
    missing = [i for i, item in enumerate(items) if not isinstance(item, dict) or group_key not in item]
    if missing:
        raise ValueError(
            f"Items [{_format_names(missing)}] have no {group_key!r}; give every item a {group_key!r} (the "
            f"patient/volume id; datalist loaders add 'case_id') or choose another group_key."
        )
    groups: dict[Any, list[dict]] = {}
    for item in items:
        groups.setdefault(item[group_key], []).append(item)
    for members in groups.values():
        members.sort(key=_item_order)
    return sorted(groups, key=str), groups


def _item_order(item: dict[str, Any]) -> tuple:
    index = item.get("slice_index")
    image = item.get("image_path", item.get("image"))
    return (index if isinstance(index, (int, np.integer)) else -1, str(image) if isinstance(image, (str, list)) else "")


def _count(fraction: float, total: int) -> int:
    """``fraction`` of ``total`` rounded half up, at least 1 when the fraction is not zero."""
    if fraction == 0:
        return 0
    return max(1, int(np.floor(fraction * total + 0.5)))


def _check_fraction(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")


def split_datalist(
    items: Sequence[dict[str, Any]],
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    group_key: str = "case_id",
) -> dict[str, list[dict[str, Any]]]:
    """Split items into training, validation and test sets by group (patient/volume).

    Fractions are of the number of groups, rounded half up, with at least one group for every
    non-zero fraction; training gets the rest and must keep at least one group.

    Args:
        items: paired items (files or slices), each with ``group_key``.
        val_fraction: fraction of groups for validation, in [0, 1).
        test_fraction: fraction of groups for testing, in [0, 1).
        seed: seed of the permutation of the (sorted) groups.
        group_key: item key naming the group; all items of a group go to the same split.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` holding the input dicts (not
        copies), ordered by group name then slice index.

    Raises:
        ValueError: bad fractions, items without ``group_key``, or too few groups for the requested
            splits (the numbers are named).
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}.")
    names, groups = _group_items(items, group_key)
    n_test, n_val = _count(test_fraction, len(names)), _count(val_fraction, len(names))
    if len(names) - n_test - n_val < 1:
        raise ValueError(
            f"Too few groups ({group_key!r}) to split: {len(names)} group(s) in {len(items)} item(s), but "
            f"test_fraction={test_fraction} needs {n_test} and val_fraction={val_fraction} needs {n_val}, "
            f"leaving {len(names) - n_test - n_val} for training (at least 1). Use more cases or smaller fractions."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    test = {names[i] for i in order[:n_test]}
    val = {names[i] for i in order[n_test : n_test + n_val]}
    splits: dict[str, list[dict[str, Any]]] = {"training": [], "validation": [], "test": []}
    for name in names:
        target = "test" if name in test else "validation" if name in val else "training"
        splits[target].extend(groups[name])
    return splits


def kfold_datalist(
    items: Sequence[dict[str, Any]],
    num_folds: int = 5,
    seed: int = 0,
    group_key: str = "case_id",
    val_fraction: float = 0.0,
) -> list[dict[str, list[dict[str, Any]]]]:
    """Group k-fold cross-validation: every group is in the test set of exactly one fold.

    The sorted groups are permuted with ``seed`` and cut into ``num_folds`` near-equal parts. In each
    fold, ``val_fraction`` of the remaining (non-test) groups, taken in permuted order, form the
    validation set.

    Args:
        items: paired items, each with ``group_key``.
        num_folds: number of folds, at least 2 and at most the number of groups.
        seed: seed of the group permutation.
        group_key: item key naming the group.
        val_fraction: fraction of each fold's non-test groups used for validation, in [0, 1).

    Returns:
        ``num_folds`` dicts ``{"training": [...], "validation": [...], "test": [...]}``
        (``validation`` is empty when ``val_fraction == 0``).

    Raises:
        ValueError: ``num_folds < 2``, more folds than groups, a bad ``val_fraction`` or a fold left
            without training groups.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}.")
    _check_fraction("val_fraction", val_fraction)
    names, groups = _group_items(items, group_key)
    if num_folds > len(names):
        raise ValueError(
            f"num_folds={num_folds} is more than the {len(names)} group(s) ({group_key!r}) in {len(items)} "
            f"item(s); every fold needs at least one test group. Use num_folds <= {len(names)}."
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    parts = np.array_split(np.arange(len(order)), num_folds)
    folds = []
    for fold, part in enumerate(parts):
        test = {order[i] for i in part}
        rest = [name for name in order if name not in test]
        n_val = _count(val_fraction, len(rest))
        if len(rest) - n_val < 1:
            raise ValueError(
                f"Fold {fold} has {len(rest)} non-test group(s); val_fraction={val_fraction} takes {n_val} and "
                f"leaves none for training. Use a smaller val_fraction or fewer folds."
            )
        val = set(rest[:n_val])
        splits: dict[str, list[dict[str, Any]]] = {"training": [], "validation": [], "test": []}
        for name in names:
            target = "test" if name in test else "validation" if name in val else "training"
            splits[target].extend(groups[name])
        folds.append(splits)
    return folds


def _relative(value: Any, base_dir: Path, where: str) -> Any:
    if isinstance(value, (list, tuple)):
        return [_relative(v, base_dir, where) for v in value]
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(
            f"{where} holds {type(value).__name__} instead of a file path (e.g. in-memory slices from "
            f"extract_slices); write_datalist writes file paths only. Save the arrays to files first "
            f"(e.g. monai_synth.utils.io.save_nifti_atomic) and list those."
        )
    absolute = os.path.abspath(value)
    try:
        return Path(os.path.relpath(absolute, base_dir)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return absolute


def write_datalist(
    path: str | os.PathLike,
    splits: dict[str, Sequence[dict[str, Any]]],
    base_dir: str | os.PathLike | None = None,
) -> Path:
    """Write splits as a decathlon-style datalist JSON, atomically.

    ``image`` and ``label`` paths (strings or lists of strings; relative ones are taken relative to
    the current folder) are written relative to ``base_dir``, so that
    ``monai.data.load_decathlon_datalist(path, base_dir=base_dir)`` gives back the same absolute paths.
    Other keys (``case_id``, ``slice_index``, ...) are written as they are.

    Args:
        path: the JSON file to write.
        splits: ``{"training": [...], "validation": [...], "test": [...]}`` (any keys) of items.
        base_dir: folder the written paths are relative to; defaults to the JSON's folder, which is
            what ``load_decathlon_datalist`` assumes when given no ``base_dir``.

    Returns:
        The path of the written file.

    Raises:
        ValueError: ``splits`` is not a dict of lists of dicts, or an item's ``image``/``label`` is an
            in-memory array instead of a file path.
    """
    path = Path(path)
    base = Path(os.path.abspath(base_dir if base_dir is not None else path.parent))
    if not isinstance(splits, dict):
        raise ValueError(f"splits must be a dict like {{'training': [...]}}, got {type(splits).__name__}.")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, entries in splits.items():
        if not isinstance(entries, (list, tuple)):
            raise ValueError(f"splits[{key!r}] must be a list of items, got {type(entries).__name__}.")
        out[key] = []
        for index, item in enumerate(entries):
            if not isinstance(item, dict):
                raise ValueError(f"splits[{key!r}][{index}] must be a dict, got {type(item).__name__}.")
            entry = dict(item)
            for k in _PATH_KEYS:
                if k in entry:
                    entry[k] = _relative(entry[k], base, f"splits[{key!r}][{index}][{k!r}]")
            out[key].append(entry)
    return write_json_atomic(path, out)


def _item_paths(item: dict[str, Any]) -> list[str]:
    value = item.get("image_path", item.get("image"))
    values = value if isinstance(value, (list, tuple)) else [value]
    return [os.path.realpath(v) for v in values if isinstance(v, (str, os.PathLike))]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b digest of a file's bytes, memoised by (resolved path, size, modification time).

    Args:
        path: the file.

    Returns:
        The hex digest (32 hex digits).
    """
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.blake2b(digest_size=16)
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _digests(paths: set[str]) -> dict[str, str]:
    """Digest -> one path, over the files that exist, hashing only files whose size occurs on both sides."""
    return {file_digest(p): p for p in paths if os.path.isfile(p)}


def check_no_leakage(
    train_items: Sequence[dict[str, Any]],
    test_items: Sequence[dict[str, Any]],
    group_key: str = "case_id",
    check_content: bool = True,
) -> None:
    """Raise if any case (``group_key``), image file or image file content is in both training and test items.

    Image files are compared by resolved path (``image_path`` for slices, else ``image``), which
    catches one file listed under two different case ids, and (``check_content``) by a digest of their
    bytes, which catches a renamed byte-identical copy. Only files of equal size are hashed (each once
    per process, see :func:`file_digest`), so the check costs little.

    Args:
        train_items: training items.
        test_items: test items.
        group_key: item key naming the case.
        check_content: also compare file contents.

    Raises:
        ValueError: listing the shared cases, files and identical contents (up to 10 of each, with the totals).
    """
    train_groups = {item[group_key] for item in train_items if group_key in item}
    test_groups = {item[group_key] for item in test_items if group_key in item}
    shared_groups = sorted(train_groups & test_groups, key=str)
    train_paths = {p for item in train_items for p in _item_paths(item)}
    test_paths = {p for item in test_items for p in _item_paths(item)}
    shared_paths = sorted(test_paths & train_paths)
    copies: list[str] = []
    if check_content:
        sizes: dict[str, int] = {p: os.path.getsize(p) for p in train_paths | test_paths if os.path.isfile(p)}
        common = {sizes[p] for p in train_paths if p in sizes} & {sizes[p] for p in test_paths if p in sizes}
        if common:
            train_digests = _digests({p for p in train_paths - test_paths if sizes.get(p) in common})
            test_digests = _digests({p for p in test_paths - train_paths if sizes.get(p) in common})
            copies = sorted(f"{test_digests[d]} == {train_digests[d]}" for d in set(train_digests) & set(test_digests))
    if shared_groups or shared_paths or copies:
        raise ValueError(
            f"Data leakage between training and test: {len(shared_groups)} shared {group_key!r} value(s) "
            f"[{_format_names(shared_groups)}], {len(shared_paths)} shared image file(s) "
            f"[{_format_names(shared_paths)}] and {len(copies)} byte-identical image file(s) under other names "
            f"(test == training) [{_format_names(copies)}]. Split by case with split_datalist/kfold_datalist, and "
            "never copy test images into a training or generated set."
        )
