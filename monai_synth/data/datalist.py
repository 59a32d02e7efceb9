"""Find paired image/mask files: MONAI datalist JSON files and ``images/`` + ``labels/`` folders.

A dataset is given either as a MONAI (decathlon-style) datalist JSON or as a folder whose image and
mask sub-folders pair files by name. Both routes return the same list of paired items::

    [{"image": "/abs/images/case_001.nii.gz", "label": "/abs/labels/case_001.nii.gz", "case_id": "case_001"}, ...]

``case_id`` identifies the patient/volume; :mod:`monai_synth.data.splits` uses it to keep every slice
of one case in the same split.

Bad input raises a :class:`ValueError` / :class:`FileNotFoundError` naming the files. Leaving bad
pairs out is opt-in: with ``on_error="skip"`` the functions skip them, log a warning and record each
one (path and reason) in a :class:`SkipReport` that the caller passes in and can write to JSON.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from monai_synth.utils.io import read_json, write_json_atomic

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_DIR_NAMES",
    "LABEL_DIR_NAMES",
    "SkipReport",
    "strip_image_extension",
    "discover_pairs",
    "load_datalist",
    "resolve_dataset",
]

logger = logging.getLogger(__name__)

#: File name endings read through MONAI ``LoadImage``; matched case-insensitively, longest first.
IMAGE_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".nrrd", ".mha", ".mhd", ".dcm")
#: Image sub-folder names recognised by :func:`discover_pairs` (``imagesTr`` is the decathlon layout).
IMAGE_DIR_NAMES: tuple[str, ...] = ("images", "imagesTr")
#: Mask sub-folder names recognised by :func:`discover_pairs`.
LABEL_DIR_NAMES: tuple[str, ...] = ("labels", "masks", "labelsTr")
# Data files that belong to a MetaImage header (``.mhd``) and are not images on their own.
_COMPANION_EXTENSIONS = (".raw", ".zraw")
# Suffixes that mask file names often carry; only used to suggest ``label_suffix`` in error messages.
_COMMON_LABEL_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt", "_segmentation")

_ON_ERROR = ("raise", "skip")


@dataclass
class SkipReport:
    """Record of what a run with ``on_error="skip"`` left out, and why.

    Pass one instance to :func:`discover_pairs`, :func:`load_datalist`, :func:`resolve_dataset` or
    :func:`monai_synth.data.slicing.extract_slices`; each skipped file or case is appended to
    :attr:`skipped` as ``{"path": ..., "reason": ..., "case_id": ...}``.

    Example::

        report = SkipReport()
        items = discover_pairs("data/", on_error="skip", report=report)
        if report:
            report.write("output/skipped.json")
    """

    skipped: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: str | os.PathLike | Sequence[str], reason: str, case_id: str | None = None) -> None:
        """Record one skipped file (or case, for a list of files) with the reason it was skipped."""
        entry: dict[str, Any] = {
            "path": [str(p) for p in path] if isinstance(path, (list, tuple)) else str(path),
            "reason": reason,
        }
        if case_id is not None:
            entry["case_id"] = str(case_id)
        self.skipped.append(entry)

    def __len__(self) -> int:
        return len(self.skipped)

    def paths(self) -> list[Any]:
        """The skipped paths, in the order they were recorded."""
        return [entry["path"] for entry in self.skipped]

    def summary(self, limit: int = 10) -> str:
        """One line per skipped entry (at most ``limit``), then how many more were left out."""
        lines = [f"{entry['path']}: {entry['reason']}" for entry in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"... and {len(self.skipped) - limit} more ({len(self.skipped)} in total)")
        return "\n".join(lines)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (``{"skipped": [...]}``) atomically and return its path."""
        return write_json_atomic(path, {"skipped": self.skipped})


def strip_image_extension(name: str) -> str:
    """Return ``name`` without its image extension (one of :data:`IMAGE_EXTENSIONS`), else unchanged.

    ``"case_1.nii.gz" -> "case_1"``, ``"CHNCXR_0001_0.png" -> "CHNCXR_0001_0"``.
    """
    lower = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def _format_names(names: Iterable[Any], limit: int = 10) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names)} in total)"
    return shown


def _check_on_error(on_error: str) -> None:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}.")


def _skip_or_raise(
    on_error: str, report: SkipReport | None, problems: list[tuple[Any, str]], message: str, what: str
) -> None:
    """Raise ``message`` when ``on_error == "raise"``; otherwise record and log the skipped entries."""
    if not problems:
        return
    if on_error == "raise":
        raise ValueError(message)
    for path, reason in problems:
        if report is not None:
            report.add(path, reason)
    logger.warning("Skipped %d %s (on_error='skip'): %s", len(problems), what, _format_names(p for p, _ in problems))


def _is_hidden(path: Path) -> bool:
    # ".DS_Store", "._case.nii.gz" (macOS resource forks, shipped inside the decathlon archives), ...
    return path.name.startswith(".")


def _scan_folder(folder: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Map file stem -> paths (more than one path = duplicate stem) and list entries that are not images."""
    by_stem: dict[str, list[Path]] = {}
    not_images: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir()):
        if _is_hidden(entry):
            continue
        if entry.is_dir():
            # A DICOM series: one sub-folder per case, read by ITK as one volume.
            if not any(not _is_hidden(f) for f in entry.iterdir()):
                not_images.append((entry, "empty sub-folder (expected a DICOM series)"))
                continue
            by_stem.setdefault(entry.name, []).append(entry)
            continue
        if entry.name.lower().endswith(_COMPANION_EXTENSIONS):
            continue
        stem = strip_image_extension(entry.name)
        if stem == entry.name:
            not_images.append((entry, f"not an image file (supported: {', '.join(IMAGE_EXTENSIONS)})"))
            continue
        by_stem.setdefault(stem, []).append(entry)
    return by_stem, not_images


def _folder_signature(folder: Path) -> dict[str, int]:
    return {f.name: (f.stat().st_size if f.is_file() else -1) for f in folder.iterdir() if not _is_hidden(f)}


def _pick_subfolder(root: Path, given: str | os.PathLike | None, candidates: Sequence[str], role: str) -> Path:
    if given is not None:
        folder = Path(given)
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise FileNotFoundError(f"The {role} folder {folder} does not exist (set via {role}_dir={given!r}).")
        return folder
    found = [root / name for name in candidates if (root / name).is_dir()]
    if not found:
        present = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not _is_hidden(p))
        raise ValueError(
            f"{root} has no {role} sub-folder: expected one of {', '.join(n + '/' for n in candidates)} "
            f"but found [{_format_names(present)}]. Put the files in images/ and labels/ (or masks/), "
            f"pass image_dir=/label_dir=, or give a datalist JSON instead."
        )
    if len(found) == 1:
        return found[0]
    names = {p.name for p in found}
    if names == {"labels", "masks"}:
        labels, masks = _folder_signature(root / "labels"), _folder_signature(root / "masks")
        if labels == masks:
            return root / "labels"
        only_labels = sorted(set(labels) - set(masks))
        only_masks = sorted(set(masks) - set(labels))
        differ = sorted(n for n in set(labels) & set(masks) if labels[n] != masks[n])
        raise ValueError(
            f"{root} has both labels/ and masks/ with different content (only in labels/: "
            f"[{_format_names(only_labels)}]; only in masks/: [{_format_names(only_masks)}]; "
            f"different file sizes: [{_format_names(differ)}]). Remove one or pass label_dir=."
        )
    raise ValueError(
        f"{root} has several {role} sub-folders ({', '.join(sorted(p.name + '/' for p in found))}); "
        f"pass {role}_dir= to choose one."
    )


def discover_pairs(
    dataset_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    label_dir: str | os.PathLike | None = None,
    label_suffix: str = "",
    on_error: str = "raise",
    report: SkipReport | None = None,
    require_labels: bool = True,
) -> list[dict[str, str]]:
    """Pair the files of an images folder with the masks of a labels folder by file name.

    Files pair when their names match after stripping one image extension (:data:`IMAGE_EXTENSIONS`,
    case-insensitive): ``images/case_1.nii.gz`` pairs with ``labels/case_1.nii.gz`` or
    ``labels/case_1.nrrd``. A sub-folder (in both folders) is one DICOM series. Hidden files
    (``.DS_Store``, ``._case.nii.gz``) and the ``.raw``/``.zraw`` data files of ``.mhd`` headers are
    ignored.

    Sub-folders are found as ``images/`` or ``imagesTr/`` and ``labels/``, ``masks/`` or
    ``labelsTr/``. When both ``labels/`` and ``masks/`` exist they must hold the same files (same names
    and sizes); ``labels/`` is then used.

    Args:
        dataset_dir: the dataset folder.
        image_dir: image sub-folder name (relative to ``dataset_dir``) or absolute path; found
            automatically when omitted.
        label_dir: mask sub-folder, likewise.
        label_suffix: text that mask names carry after the image name, e.g. ``"_mask"`` to pair
            ``images/CHNCXR_0001_0.png`` with ``masks/CHNCXR_0001_0_mask.png``.
        on_error: ``"raise"`` (default) raises on images without masks, masks without images,
            duplicated names and non-image files; ``"skip"`` leaves those out, logs a warning and
            records them in ``report``. Structural problems (missing or empty folders) always raise.
        report: a :class:`SkipReport` that receives the skipped files when ``on_error="skip"``.
        require_labels: with ``False``, a folder with images but no label sub-folder gives unlabelled
            items ``{"image", "case_id"}`` (training an image-only GAN); with a label sub-folder the
            files must still pair.

    Returns:
        ``[{"image": abs path, "label": abs path, "case_id": stem}, ...]`` sorted by ``case_id``.

    Raises:
        FileNotFoundError: ``dataset_dir`` or a given sub-folder does not exist.
        ValueError: no image/mask sub-folder (lists what was found), an empty sub-folder, conflicting
            ``labels/`` and ``masks/``, or (with ``on_error="raise"``) unpaired, duplicated or
            non-image files, each listed by name.
    """
    _check_on_error(on_error)
    root = Path(dataset_dir)
    if not root.exists():
        raise FileNotFoundError(f"Dataset folder {root} does not exist.")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give a folder with images/ and labels/ (or a datalist JSON).")
    root = Path(os.path.abspath(root))
    images_folder = _pick_subfolder(root, image_dir, IMAGE_DIR_NAMES, "image")
    if not require_labels and label_dir is None and not any((root / n).is_dir() for n in LABEL_DIR_NAMES):
        by_stem, not_images = _scan_folder(images_folder)
        if not by_stem:
            raise ValueError(f"The image folder {images_folder} holds no image files.")
        _skip_or_raise(
            on_error,
            report,
            not_images,
            f"The image folder {images_folder} holds entries that are not images: "
            f"[{_format_names(p.name for p, _ in not_images)}]; move them out or pass on_error='skip'.",
            f"non-image entries in {images_folder}",
        )
        duplicated = sorted(stem for stem, paths in by_stem.items() if len(paths) > 1)
        if duplicated:
            raise ValueError(f"The image folder {images_folder} has several files named [{_format_names(duplicated)}].")
        return [{"image": str(paths[0]), "case_id": stem} for stem, paths in sorted(by_stem.items())]
    labels_folder = _pick_subfolder(root, label_dir, LABEL_DIR_NAMES, "label")

    scans = {}
    for folder, role in ((images_folder, "image"), (labels_folder, "mask")):
        by_stem, not_images = _scan_folder(folder)
        if not by_stem and not not_images:
            raise ValueError(f"The {role} folder {folder} is empty; put the {role} files there.")
        _skip_or_raise(
            on_error,
            report,
            not_images,
            f"The {role} folder {folder} holds entries that are not images: "
            f"[{_format_names(p.name for p, _ in not_images)}]; move them out or pass on_error='skip'.",
            f"non-image entries in {folder}",
        )
        duplicates = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
        _skip_or_raise(
            on_error,
            report,
            [(p, f"{role} name {stem!r} is used by several files") for stem, ps in duplicates.items() for p in ps],
            f"The {role} folder {folder} has several files with the same name: "
            + "; ".join(f"{stem}: {', '.join(p.name for p in ps)}" for stem, ps in list(duplicates.items())[:10])
            + ". Keep one file per case.",
            f"duplicated {role} names",
        )
        scans[role] = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}

    images = scans["image"]
    masks = {}
    masks_without_suffix = []
    for stem, path in scans["mask"].items():
        if label_suffix and not stem.endswith(label_suffix):
            masks_without_suffix.append(stem)
            continue
        masks[stem[: len(stem) - len(label_suffix)] if label_suffix else stem] = path
    only_images = sorted(set(images) - set(masks))
    only_masks = sorted(set(masks) - set(images))
    unpaired_mask_names = sorted(
        [scans["mask"][s].name for s in masks_without_suffix] + [masks[s].name for s in only_masks]
    )
    if only_images or unpaired_mask_names:
        message = f"Images and masks in {root} do not pair by name."
        if only_images:
            names = _format_names(images[s].name for s in only_images)
            message += f" Images without a mask in {labels_folder}: [{names}]."
        if unpaired_mask_names:
            message += f" Masks without an image in {images_folder}: [{_format_names(unpaired_mask_names)}]."
        message += _suffix_hint(only_images, only_masks + masks_without_suffix, label_suffix)
        message += " Add the missing files, remove the extra ones or pass on_error='skip'."
        problems = [(images[s], "image without a mask") for s in only_images]
        problems += [(labels_folder / name, "mask without an image") for name in unpaired_mask_names]
        _skip_or_raise(on_error, report, problems, message, "unpaired files")

    items = [{"image": str(images[s]), "label": str(masks[s]), "case_id": s} for s in sorted(set(images) & set(masks))]
    if not items:
        raise ValueError(f"No image/mask pairs found in {root} ({images_folder.name}/ and {labels_folder.name}/).")
    return items


def _suffix_hint(only_images: Sequence[str], only_masks: Sequence[str], label_suffix: str) -> str:
    if label_suffix or not only_images or not only_masks:
        return ""
    wanted = set(only_images)
    for suffix in _COMMON_LABEL_SUFFIXES:
        if any(m.endswith(suffix) and m[: -len(suffix)] in wanted for m in only_masks):
            return f" The mask names look like '<image name>{suffix}': pass label_suffix={suffix!r}."
    return ""


def _derive_case_ids(paths: Sequence[str]) -> list[str]:
    """File stems, or paths relative to the common folder when stems collide (``patient1/image``)."""
    stems = [strip_image_extension(os.path.basename(os.path.normpath(p))) for p in paths]
    if len(set(stems)) == len(set(paths)) or len(paths) < 2:
        return stems
    common = os.path.commonpath([os.path.dirname(os.path.normpath(p)) for p in paths])
    return [strip_image_extension(os.path.relpath(os.path.normpath(p), common)).replace(os.sep, "/") for p in paths]


def _first_path(value: Any) -> str:
    return str(value[0]) if isinstance(value, (list, tuple)) else str(value)


def _as_paths(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def load_datalist(
    path: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    require_label: bool = True,
    on_error: str = "raise",
    report: SkipReport | None = None,
) -> list[dict[str, Any]]:
    """Read a MONAI decathlon-style datalist JSON through :func:`monai.data.load_decathlon_datalist`.

    Relative ``image``/``label`` paths are resolved against ``base_dir`` (default: the JSON's folder),
    exactly as MONAI does. ``image`` may be a list of files (one per modality). Every entry gets a
    ``case_id``: its own when the JSON has one, else the image file stem (or, when stems collide as in
    ``patient1/image.nii.gz``, the path relative to the images' common folder without extension).
    Give an explicit ``case_id`` to group several files of one patient.

    Args:
        path: the datalist JSON file.
        key: list to read (``"training"``, ``"validation"``, ``"test"``, ...).
        base_dir: folder relative paths are relative to; defaults to the JSON's folder.
        require_label: entries must have a ``label`` (set ``False`` for unlabelled test lists).
        on_error: ``"raise"`` (default) or ``"skip"`` to leave out entries whose files are missing,
            recording them in ``report``.
        report: a :class:`SkipReport` receiving skipped entries.

    Returns:
        The entries with absolute paths and a ``case_id``.

    Raises:
        FileNotFoundError: the JSON does not exist, or (``on_error="raise"``) it references files
            that do not exist (listed).
        ValueError: corrupt JSON, missing ``key`` (lists the available keys), entries without
            ``image``/``label`` (listed by index), or no entries left.
    """
    _check_on_error(on_error)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Datalist {path} does not exist.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the datalist JSON file (or use resolve_dataset for folders).")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"Datalist {path} must hold a JSON object like {{'{key}': [...]}}, got {type(data).__name__}.")
    if key not in data:
        raise ValueError(f"Datalist {path} has no key {key!r}; available keys: {sorted(data)}.")
    raw = data[key]
    if not isinstance(raw, list):
        raise ValueError(f"'{key}' in datalist {path} must be a list of entries, got {type(raw).__name__}.")
    required = ("image", "label") if require_label else ("image",)
    # MONAI accepts a "test" list of bare image paths (decathlon style); everything else must be dicts.
    bare_test_list = key == "test" and not require_label and all(isinstance(e, str) and e for e in raw)
    bad = [
        i
        for i, entry in enumerate(raw)
        if not bare_test_list
        and not (isinstance(entry, dict) and all(entry.get(k) not in (None, "", []) for k in required))
    ]
    if bad:
        raise ValueError(
            f"Entries of '{key}' in datalist {path} without {' and '.join(required)}: indices "
            f"[{_format_names(bad)}]. Every entry needs {{{', '.join(repr(k) + ': ...' for k in required)}}}."
        )
    if not raw:
        raise ValueError(f"'{key}' in datalist {path} is empty.")
    items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key, base_dir=base_dir)
    for item, entry in zip(items, raw):
        # MONAI joins any value that happens to name an existing path; a case id is never a path.
        if isinstance(entry, dict) and "case_id" in entry:
            item["case_id"] = entry["case_id"]

    missing = []
    kept = []
    for item in items:
        absent = [p for k in ("image", "label") if k in item for p in _as_paths(item[k]) if not os.path.exists(p)]
        if absent:
            missing.extend(absent)
            if on_error == "skip":
                if report is not None:
                    report.add(item["image"], f"missing file(s): {', '.join(absent)}", item.get("case_id"))
            continue
        kept.append(item)
    if missing:
        if on_error == "raise":
            raise FileNotFoundError(
                f"Datalist {path} ('{key}') references {len(missing)} file(s) that do not exist: "
                f"[{_format_names(missing)}]. Fix the paths (relative paths are relative to "
                f"{base_dir or path.parent}) or pass on_error='skip'."
            )
        logger.warning(
            "Skipped %d entries of %s with missing files: %s", len(items) - len(kept), path, _format_names(missing)
        )
    if not kept:
        raise ValueError(f"No entries left in '{key}' of datalist {path} after skipping those with missing files.")

    without_id = [item for item in kept if "case_id" not in item]
    for item, case_id in zip(without_id, _derive_case_ids([_first_path(item["image"]) for item in without_id])):
        item["case_id"] = case_id
    return kept


def resolve_dataset(
    source: str | os.PathLike,
    key: str = "training",
    on_error: str = "raise",
    report: SkipReport | None = None,
    require_labels: bool = True,
) -> list[dict[str, Any]]:
    """Turn a dataset given as a datalist JSON or a folder into paired items.

    The rule:

    1. a ``.json`` file -> :func:`load_datalist`;
    2. a folder containing ``datalist.json`` -> that datalist (it wins over image/mask sub-folders,
       because a datalist is the explicit, reproducible description of the dataset);
    3. a folder containing a decathlon ``dataset.json`` with a ``key`` list -> that datalist (the
       nnU-Net ``dataset.json``, which has no such list, is ignored);
    4. any other folder -> :func:`discover_pairs`.

    Args:
        source: JSON file or dataset folder.
        key: datalist key to read (cases 1-3).
        on_error: ``"raise"`` or ``"skip"``, passed on.
        report: :class:`SkipReport` receiving skipped entries, passed on.
        require_labels: ``False`` accepts unlabelled images (items without ``"label"``).

    Returns:
        Paired items ``[{"image", "label", "case_id"}, ...]`` with absolute paths.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` is a file that is not JSON, or the errors of the function used.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(
            f"Dataset {source} does not exist; give a datalist JSON or a folder with images/ and labels/."
        )
    if source.is_file():
        if source.suffix.lower() != ".json":
            raise ValueError(f"Dataset {source} is a file but not a datalist JSON; give a .json datalist or a folder.")
        return load_datalist(source, key=key, on_error=on_error, report=report, require_label=require_labels)
    datalist = source / "datalist.json"
    if datalist.is_file():
        logger.info("Using datalist %s (preferred over image/mask sub-folders).", datalist)
        return load_datalist(datalist, key=key, on_error=on_error, report=report, require_label=require_labels)
    decathlon = source / "dataset.json"
    if decathlon.is_file():
        content = read_json(decathlon)
        if isinstance(content, dict) and isinstance(content.get(key), list) and content[key]:
            logger.info("Using decathlon datalist %s.", decathlon)
            return load_datalist(decathlon, key=key, on_error=on_error, report=report, require_label=require_labels)
    return discover_pairs(source, on_error=on_error, report=report, require_labels=require_labels)
