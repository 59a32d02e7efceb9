"""The orientation contract: where monai_synth's internal 2D layout meets files on disk.

**Contract.** A generated pair read with MONAI's default ``LoadImage`` (+ ``EnsureChannelFirst``) has
the same orientation as a source image of the training set read the same way, and NIfTI files carry
a geometry that 3D Slicer / ITK-SNAP display the right way up.

Internally every 2D array is ``(C, H, W)``, in one of two *layouts* recorded per training set (in
``PairedSliceDataset.summary["orientation"]`` and so in every generator export,
``config["data"]["orientation"]``):

- ``"viewer"``: PNG/JPEG sources. Row 0 is the top row of the picture (as PIL shows it; read with
  ``PILReader(reverse_indexing=False)``). MONAI's default reader returns pictures transposed,
  ``(W, H)`` (x first, the medical index order), so writers transpose back: a generated NIfTI holds
  ``(W, H)`` with the affine MONAI's ``PILReader`` gives a PNG (identity, so ``Orientationd`` treats
  both alike; this is also what MONAI's own ``LoadImage`` -> ``SaveImage`` writes), and a generated PNG
  holds the picture itself.
- ``"index"``: NIfTI / NRRD / MHA / DICOM sources and the built-in phantom. Arrays keep MONAI's index
  order, so NIfTI is written unchanged; its affine is the source slice's (direction and spacing of the
  first training case, in-plane spacing scaled by the centre-crop + resize to ``image_size``). A PNG
  written from such data holds the transposed array (so that MONAI reads it back in index order).
- ``"legacy"``: exports written before the contract (no ``orientation`` entry). Files are written as
  before (internal array unchanged, identity affine) with a warning; for a PNG-trained generator they
  load transposed relative to the source PNGs (see ``docs/DESIGN.md`` on converting old sets).

Every reader of user pictures and every writer of generated pairs goes through this module:
:func:`load_image`, :func:`save_image`, :func:`save_label`, :func:`save_map`, :func:`save_preview`
and :func:`from_file_layout` (masks annotated on exported images).

Multi-channel images (``C > 1``) are written as one NIfTI per channel, ``<name>_c0.nii.gz``, ...;
the datalist lists them, so ``LoadImaged`` stacks them to ``(C, H, W)`` beside the ``(1, H, W)`` label.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_synth.utils.io import atomic_path, save_nifti_atomic, save_png_atomic

__all__ = [
    "LAYOUTS",
    "PICTURE_EXTENSIONS",
    "convert_layout",
    "export_orientation",
    "generated_set_orientation",
    "from_file_layout",
    "is_picture",
    "layouts_agree",
    "load_image",
    "orientation_of_files",
    "phantom_orientation",
    "save_image",
    "save_label",
    "save_map",
    "save_preview",
    "save_volume_label",
    "slice_affine",
    "to_file_layout",
]

logger = logging.getLogger(__name__)

LAYOUTS = ("viewer", "index", "legacy")
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# the affine MONAI's default PILReader gives a picture: identity. ITK would say LPS identity (what 3D Slicer
# shows upright), but a pipeline with Orientationd would then flip generated files and not the source PNGs.
_PICTURE_AFFINE = np.eye(4)
_LOADERS: dict[str, Any] = {}


def is_picture(path: str | os.PathLike) -> bool:
    """True for PNG/JPEG/BMP files (read in ``"viewer"`` layout)."""
    return str(path).lower().endswith(PICTURE_EXTENSIONS)


def _loader(picture: bool):
    from monai.data import PILReader
    from monai.transforms import LoadImage

    kind = "picture" if picture else "default"
    if kind not in _LOADERS:
        # MONAI's PILReader returns (W, H) by default; reverse_indexing=False keeps the picture's (H, W)
        reader = PILReader(reverse_indexing=False) if picture else None
        _LOADERS[kind] = LoadImage(reader=reader, image_only=True, ensure_channel_first=True, dtype=None)
    return _LOADERS[kind]


def load_image(path: str | os.PathLike):
    """Read one image file or DICOM folder channel-first in monai_synth's internal layout.

    Pictures come in ``"viewer"`` layout ``(C, H, W)``; medical formats in MONAI's index order.

    Returns:
        a MONAI ``MetaTensor`` ``(C, *spatial)`` with the file's dtype and meta (``affine`` in RAS).
    """
    path = str(path)
    with warnings.catch_warnings():
        # MONAI hands PIL's read-only buffer to torch, which warns; slices are copies, never written back.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return _loader(is_picture(path))(path)


def slice_affine(affine: np.ndarray, spatial_shape: Sequence[int], axis: int | None, image_size: int) -> np.ndarray:
    """RAS affine of a ``(image_size, image_size)`` slice cut from a source of this geometry.

    The in-plane columns are the source's (direction kept, spacing scaled by the centre-crop + resize of
    :class:`~monai_synth.transforms.PairedCropResize`: ``min(in-plane shape) / image_size``), the third
    column is the slicing axis (its spacing is the slice spacing), and the slice is centred on the centre
    of the source.

    Args:
        affine: ``(4, 4)`` source affine (RAS, as MONAI ``LoadImage`` reports it); a 2D source's may be 3x3.
        spatial_shape: source spatial shape (2 or 3 entries).
        axis: slicing axis of a 3D source, or ``None`` for a 2D source.
        image_size: side of the generated slice.

    Returns:
        ``(4, 4)`` float64 affine.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape == (3, 3):  # 2D affine: embed it
        a = np.array([[a[0, 0], a[0, 1], 0, a[0, 2]], [a[1, 0], a[1, 1], 0, a[1, 2]], [0, 0, 1, 0], [0, 0, 0, 1]])
    shape = [int(s) for s in spatial_shape] + [1] * (3 - len(spatial_shape))
    axis = 2 if axis is None else int(axis)
    plane = [k for k in range(3) if k != axis]
    scale = min(shape[k] for k in plane) / float(image_size)
    out = np.eye(4)
    out[:3, 0] = a[:3, plane[0]] * scale
    out[:3, 1] = a[:3, plane[1]] * scale
    out[:3, 2] = a[:3, axis]
    centre = a @ np.array([(s - 1) / 2.0 for s in shape] + [1.0])
    out[:3, 3] = centre[:3] - out[:3, :2] @ np.full(2, (image_size - 1) / 2.0)
    return out


def orientation_of_files(paths: Sequence[Any], axis: int | None, image_size: int) -> dict[str, Any]:
    """The orientation record of a training set read from files (first file's geometry).

    Args:
        paths: image entries of the training items (a path, or a list of paths per modality).
        axis: slicing axis used for 3D sources (``None`` for 2D).
        image_size: training size.

    Returns:
        ``{"layout": "viewer" | "index", "affine": 4x4 list, "source_format": suffix}``.

    Raises:
        ValueError: pictures and medical formats are mixed (their MONAI layouts differ, so no single
            output layout matches both); one file of each kind is named.
    """
    flat = [str(p[0]) if isinstance(p, (list, tuple)) else str(p) for p in paths]
    pictures = [p for p in flat if is_picture(p)]
    if pictures and len(pictures) != len(flat):
        other = next(p for p in flat if not is_picture(p))
        raise ValueError(
            f"The dataset mixes pictures ({pictures[0]}) and medical image files ({other}). MONAI reads "
            "pictures transposed relative to NIfTI/NRRD/DICOM, so generated pairs could not match both; "
            "convert the data to one format."
        )
    first = flat[0]
    suffix = "".join(Path(first).suffixes[-2:]).lower() if not os.path.isdir(first) else "dicom"
    if pictures:
        return {"layout": "viewer", "affine": _PICTURE_AFFINE.tolist(), "source_format": suffix}
    image = load_image(first)
    affine = np.asarray(image.affine, dtype=np.float64)
    return {
        "layout": "index",
        "affine": slice_affine(affine, image.shape[1:], axis if len(image.shape) == 4 else None, image_size).tolist(),
        "source_format": suffix,
    }


def phantom_orientation(image_size: int) -> dict[str, Any]:
    """Orientation record of the built-in phantom at ``image_size`` (its NIfTI files' geometry)."""
    from monai_synth.data.phantom import phantom_affine

    n = max(32, min(512, int(image_size)))
    return {
        "layout": "index",
        "affine": slice_affine(phantom_affine(n), (n, n), None, image_size).tolist(),
        "source_format": "phantom",
    }


def export_orientation(config: dict[str, Any], source: Any = "the generator export") -> dict[str, Any]:
    """The orientation record of a generator export (``config["data"]["orientation"]``).

    Exports written before the contract have none: they get ``{"layout": "legacy"}`` (files written as
    before) and a warning naming ``source``.
    """
    record = (config or {}).get("data", {}).get("orientation")
    if record and record.get("layout") in LAYOUTS:
        return dict(record)
    logger.warning(
        "%s records no source orientation (written before the orientation contract): generated files keep the "
        "old layout (identity affine; a PNG-trained generator's pairs load transposed relative to its source PNGs "
        "with MONAI LoadImage). Retrain, or transpose the pairs as described in docs/DESIGN.md.",
        source,
    )
    return {"layout": "legacy", "affine": None, "source_format": None}


def _layout(orientation: dict[str, Any] | None) -> str:
    return (orientation or {}).get("layout", "legacy")


def to_file_layout(array: np.ndarray, orientation: dict[str, Any] | None, file_format: str = "nifti") -> np.ndarray:
    """Internal ``(..., H, W)`` array -> the array a writer stores so that MONAI reads the contract's layout.

    ``file_format="nifti"`` is also the conversion between the internal layout and what MONAI's default
    ``LoadImage`` returns for a source file (numpy arrays and torch tensors alike).

    NIfTI stores what MONAI returns; PIL stores the picture, which MONAI returns transposed. So pictures
    (``"viewer"``) are transposed for NIfTI and kept for PNG; index-order data the other way round.
    ``"legacy"`` never transposes.
    """
    layout = _layout(orientation)
    transpose = (layout == "viewer") == (file_format == "nifti") and layout != "legacy"
    if not transpose:
        return array
    return array.transpose(-1, -2) if hasattr(array, "dim") else np.swapaxes(array, -1, -2)


def layouts_agree(source: dict[str, Any] | None, target: dict[str, Any] | None) -> bool:
    """True when arrays read in ``source``'s layout need no conversion to ``target``'s (see :func:`convert_layout`)."""
    layouts = {_layout(source), _layout(target)}
    return "legacy" in layouts or len(layouts) == 1


def convert_layout(array: Any, source: dict[str, Any] | None, target: dict[str, Any] | None) -> Any:
    """An internal ``(..., H, W)`` array of a dataset read in ``source``'s layout, in ``target``'s layout.

    Two datasets read by :func:`load_image` agree when both are pictures or both are medical files; a
    picture set and a NIfTI set (e.g. real PNGs and the NIfTI pairs a PNG-trained generator wrote under
    the contract) are transposed relative to each other. ``"legacy"`` on either side never transposes
    (pre-contract sets hold the generator's internal layout as is).

    Args:
        array: numpy array or torch tensor ``(..., H, W)``.
        source: orientation record of the dataset ``array`` was read from.
        target: orientation record of the dataset whose layout is wanted.

    Returns:
        ``array`` itself, or its last two axes swapped.
    """
    if layouts_agree(source, target):
        return array
    return array.transpose(-1, -2) if hasattr(array, "dim") else np.swapaxes(array, -1, -2)


def generated_set_orientation(source: str | os.PathLike) -> dict[str, Any] | None:
    """``{"layout": "legacy"}`` when ``source`` (a generated ``datalist.json`` or its folder) predates the contract.

    A monai_synth generation folder holds ``generation.json`` with the generator's run config; without
    ``data.orientation`` in it, its files hold the generator's internal layout (see ``"legacy"``).

    Returns:
        the legacy record, or ``None`` when the files follow the contract (or are not monai_synth's):
        then they are read like any other files.
    """
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    marker = folder / "generation.json"
    if not marker.is_file():
        return None
    config = json.loads(marker.read_text()).get("config") or {}
    record = (config.get("data") or {}).get("orientation")
    if record and record.get("layout") in ("viewer", "index"):
        return None
    return {"layout": "legacy", "affine": None, "source_format": None}


def from_file_layout(array: np.ndarray, orientation: dict[str, Any] | None, file_format: str = "nifti") -> np.ndarray:
    """Inverse of :func:`to_file_layout` (a swap of the last two axes is its own inverse)."""
    return to_file_layout(array, orientation, file_format)


def _affine(orientation: dict[str, Any] | None) -> np.ndarray | None:
    affine = (orientation or {}).get("affine")
    return None if affine is None else np.asarray(affine, dtype=np.float64)


def save_image(path: str | os.PathLike, image: np.ndarray, orientation: dict[str, Any] | None) -> list[Path]:
    """Write a generated image ``(C, H, W)`` float (internal layout) as NIfTI following the contract.

    One channel: ``path``. Several: ``<path stem>_c0.nii.gz``, ... (one file per channel), so MONAI
    ``LoadImaged`` on the list gives ``(C, H, W)``.

    Returns:
        the written paths (one per channel; list the whole list as the datalist's ``image``).
    """
    path = Path(path)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    affine = _affine(orientation)
    if image.shape[0] == 1:
        return [save_nifti_atomic(path, to_file_layout(image[0], orientation), affine)]
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    return [
        save_nifti_atomic(path.with_name(f"{stem}_c{c}.nii.gz"), to_file_layout(image[c], orientation), affine)
        for c in range(image.shape[0])
    ]


def save_label(path: str | os.PathLike, label: np.ndarray, orientation: dict[str, Any] | None) -> Path:
    """Write a label map ``(1, H, W)`` / ``(H, W)`` (internal layout) as uint8 NIfTI following the contract."""
    label = np.asarray(label)
    label = label.reshape(label.shape[-2:]).astype(np.uint8)
    return save_nifti_atomic(path, to_file_layout(label, orientation), _affine(orientation))


def save_volume_label(path: str | os.PathLike, label: np.ndarray, affine: np.ndarray | None) -> Path:
    """Write a 3D label volume ``(X, Y, Z)`` in MONAI's index order (``"index"`` layout) with the source's affine.

    Args:
        path: ``.nii.gz`` destination.
        label: ``(X, Y, Z)`` integer labels, as MONAI ``LoadImage`` returns the source volume (no channel).
        affine: ``(4, 4)`` RAS affine of the source (``MetaTensor.affine``); ``None``: identity.
    """
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(label).astype(np.uint8), np.eye(4) if affine is None else np.asarray(affine))
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)


def save_map(path: str | os.PathLike, value: np.ndarray, orientation: dict[str, Any] | None) -> Path:
    """Write a per-pixel float map ``(..., H, W)`` with one image's worth of pixels (e.g. uncertainty)."""
    value = np.asarray(value, dtype=np.float32)
    value = value.reshape(value.shape[-2:])
    return save_nifti_atomic(path, to_file_layout(value, orientation), _affine(orientation))


def save_preview(path: str | os.PathLike, array: np.ndarray, orientation: dict[str, Any] | None) -> Path:
    """Write a ``(H, W)`` uint8 array (internal layout) as PNG that MONAI reads like the NIfTI beside it."""
    return save_png_atomic(path, np.ascontiguousarray(to_file_layout(np.asarray(array), orientation, "png")))
