"""The model-zoo layout of a bundle folder: trained weights in ``<bundle_root>/models/`` described by its metadata.

A MONAI model-zoo bundle is a folder of its own (``configs/``, ``docs/``, ``models/``, ``LICENSE``,
``large_files.yml``). Training runs keep writing their record to ``<output_dir>`` (checkpoints, grids,
summary, ``generator.pt``); at the end they *publish* the trained file to ``<models_dir>`` (default
``<bundle_root>/models``) with :func:`publish_model`:

- ``models/generator.pt`` (paired_dcgan, datasetgan), ``models/interpreter.pt`` (datasetgan) or
  ``models/model.pt`` (a synthetic_evaluation study's segmentation network), copied atomically, with the
  config that rebuilds the network beside it as JSON (``generator_config.json``, ...);
- ``models/metadata.json``: the bundle's metadata whose ``network_data_format`` describes the model that
  was trained (channels, size, classes, latent), written atomically; when ``<bundle_root>/configs/metadata.json``
  exists (the bundle folder is used as a model-zoo folder) it is rewritten the same way.

The ``network_data_format`` of each kind of file is computed from the file's own config
(:func:`generator_data_format`, :func:`segmenter_data_format`, :func:`interpreter_data_format`).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_synth.utils.export import load_checkpoint
from monai_synth.utils.io import atomic_path, read_json, write_json_atomic

__all__ = [
    "generator_data_format",
    "interpreter_data_format",
    "publish_generator",
    "publish_interpreter",
    "publish_model",
    "publish_study_model",
    "segmenter_data_format",
]


def _tensor_io(
    num_channels: int,
    spatial_shape: list[int],
    channel_def: Mapping[str, str],
    *,
    type_: str = "image",
    format_: str = "magnitude",
    value_range: list[float] | None = None,
) -> dict[str, Any]:
    """One entry of ``network_data_format`` in the model-zoo schema's ``network_io`` form."""
    return {
        "type": type_,
        "format": format_,
        "num_channels": int(num_channels),
        "spatial_shape": [int(s) for s in spatial_shape],
        "dtype": "float32",
        "value_range": list(value_range) if value_range is not None else [],
        "is_patch_data": False,
        "channel_def": {str(k): str(v) for k, v in channel_def.items()},
    }


def _mask_channel_names(num_classes: int, label_names: Mapping[str, str] | None) -> list[str]:
    """Names of the mask channels of the paired encoding: 1 channel for a binary mask, ``K`` one-hot otherwise."""
    names = {str(k): str(v) for k, v in (label_names or {}).items()}
    if num_classes <= 2:
        return [f"mask ({names.get('1', 'foreground')} > 0)"]
    return [f"mask {names.get(str(k), f'class {k}')}" for k in range(num_classes)]


def generator_data_format(config: Mapping[str, Any]) -> dict[str, Any]:
    """``network_data_format`` of a ``generator.pt`` (its export config): ``z (B, latent) -> (B, C, S, S)``.

    Args:
        config: the ``config`` of a generator export (:func:`~monai_synth.utils.export.generator_export_config`).

    Returns:
        ``{"inputs": {"latent": ...}, "outputs": {"pair" | "image" | "mask": ...}}``: the latent size and
        distribution (DCGAN exports: U[-1, 1]; StyleGAN2: N(0, 1)), the output channels named (image channels
        first, then the mask encoding), the size ``S x S`` and the value range [-1, 1].
    """
    generator = config["generator"]
    data = config["data"]
    latent = config.get("latent") or {
        "dim": generator.get("latent_dim", generator.get("z_dim")),
        "distribution": "uniform",
    }
    uniform = latent["distribution"] == "uniform"
    image_channels, num_classes = int(data["image_channels"]), int(data["num_classes"])
    mode = generator.get("mode", "paired")
    image_names = ["image"] if image_channels == 1 else [f"image channel {c}" for c in range(image_channels)]
    mask_names = _mask_channel_names(num_classes, data.get("label_names"))
    # a conditional (C-SG) generator draws the image for a given mask: mask in, image out
    names = {"image": image_names, "mask": mask_names, "paired": image_names + mask_names, "conditional": image_names}[
        mode
    ]
    out_channels = int(generator.get("out_channels", len(names)))
    if len(names) != out_channels:  # a layout the names above do not know: number the channels instead
        names = [f"channel {c}" for c in range(out_channels)]
    size = int(data["image_size"])
    output_name = "pair" if mode == "paired" else mode
    inputs = {
        "latent": _tensor_io(
            latent["dim"],
            [],
            {},
            type_="tensor",
            format_=f"latent ({'uniform U[-1, 1]' if uniform else 'standard normal N(0, 1)'})",
            value_range=[-1, 1] if uniform else None,
        )
    }
    if mode == "conditional":
        output_name = "image"
        inputs["mask"] = _tensor_io(
            len(mask_names), [size, size], dict(enumerate(mask_names)), format_="mask encoding", value_range=[-1, 1]
        )
    outputs = {output_name: _tensor_io(out_channels, [size, size], dict(enumerate(names)), value_range=[-1, 1])}
    return {"inputs": inputs, "outputs": outputs}


def interpreter_data_format(generator_config: Mapping[str, Any], interpreter: Mapping[str, Any]) -> dict[str, Any]:
    """``network_data_format`` of a DatasetGAN bundle with a style interpreter: the generator's, plus the labels.

    Args:
        generator_config: the config of the ``generator.pt`` whose features the interpreter reads.
        interpreter: the ``interpreter.pt`` checkpoint (``config`` with ``num_classes``, ``label_names``).

    Returns:
        :func:`generator_data_format` with an extra ``label`` output ``(B, 1, S, S)`` holding class indices.
    """
    fmt = generator_data_format(generator_config)
    num_classes = int(interpreter["config"]["num_classes"])
    names = {str(k): str(v) for k, v in (interpreter.get("label_names") or {}).items()}
    size = int(generator_config["data"]["image_size"])
    classes = ", ".join(f"{k} {names.get(str(k), f'class {k}')}" for k in range(num_classes))
    fmt["outputs"]["label"] = _tensor_io(
        1, [size, size], {"0": f"class index ({classes})"}, format_="labels", value_range=[0, num_classes - 1]
    )
    return fmt


def segmenter_data_format(config: Mapping[str, Any]) -> dict[str, Any]:
    """``network_data_format`` of a study's ``model.pt``: ``image (B, C, S, S) -> logits (B, K, S, S)``.

    Args:
        config: the ``config`` of a model saved by :func:`~monai_synth.evaluation.inference.save_study_model`.
    """
    size = int(config["image_size"])
    in_channels, num_classes = int(config["in_channels"]), int(config["num_classes"])
    class_names = config.get("preprocessing", {}).get("class_names") or {}
    if isinstance(class_names, (list, tuple)):
        class_names = dict(enumerate(class_names))
    class_names = {str(k): str(v) for k, v in class_names.items()}
    image_def = {c: "image" if in_channels == 1 else f"image channel {c}" for c in range(in_channels)}
    return {
        "inputs": {"image": _tensor_io(in_channels, [size, size], image_def, value_range=[-1, 1])},
        "outputs": {
            "pred": _tensor_io(
                num_classes,
                [size, size],
                {k: class_names.get(str(k), f"class {k}") for k in range(num_classes)},
                format_="segmentation",
            )
        },
    }


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def publish_model(
    source: str | Path,
    models_dir: str | Path,
    filename: str,
    metadata: Mapping[str, Any] | None,
    data_format: Mapping[str, Any],
    bundle_root: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Copy a trained file into ``models_dir`` and write the metadata that describes it (all atomically).

    Args:
        source: the trained file (e.g. ``<output_dir>/generator.pt``).
        models_dir: the bundle's ``models/`` folder (created).
        filename: name inside it (``generator.pt``, ``interpreter.pt``, ``model.pt``).
        metadata: the bundle's metadata (``@_meta_`` in a config); ``None`` or empty: read
            ``models_dir/metadata.json`` when it exists (an earlier publication), else only the format is written.
        data_format: the ``network_data_format`` of the trained model.
        bundle_root: when ``<bundle_root>/configs/metadata.json`` exists, its ``network_data_format`` is
            rewritten too (the folder is used as a model-zoo bundle).
        config: the file's own config (what rebuilds the network), also written readably as
            ``<models_dir>/<stem>_config.json`` (e.g. ``generator_config.json``).

    Returns:
        the published file.

    Raises:
        FileNotFoundError: ``source`` does not exist.
    """
    source, models_dir = Path(source), Path(models_dir)
    if not source.is_file():
        raise FileNotFoundError(f"Cannot publish {source} to {models_dir}: the file does not exist.")
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / filename
    if source.resolve() != target.resolve():
        _copy_atomic(source, target)
    if config is not None:
        write_json_atomic(models_dir / f"{Path(filename).stem}_config.json", dict(config))
    zoo_meta = models_dir / "metadata.json"
    base = dict(metadata) if metadata else (read_json(zoo_meta) if zoo_meta.is_file() else {})
    base = copy.deepcopy(base)
    base["network_data_format"] = copy.deepcopy(dict(data_format))
    write_json_atomic(zoo_meta, base)
    if bundle_root is not None:
        bundle_meta = Path(bundle_root) / "configs" / "metadata.json"
        if bundle_meta.is_file():
            current = read_json(bundle_meta)
            current["network_data_format"] = copy.deepcopy(dict(data_format))
            write_json_atomic(bundle_meta, current)
    return target


def publish_study_model(
    study_dir: str | Path,
    models_dir: str | Path,
    metadata: Mapping[str, Any] | None,
    arm: str | None = None,
    fold: int = 0,
    bundle_root: str | Path | None = None,
) -> Path | None:
    """Publish one segmentation network of a finished study as ``models/model.pt``.

    Args:
        study_dir: the study's ``output_dir`` (models in ``models/<arm>/fold<k>/model.pt``).
        models_dir: destination folder; ``None`` or ``""`` switches publishing off.
        metadata: the bundle's metadata (see :func:`publish_model`).
        arm: the arm to publish; ``None``: the first arm with a saved model in the study's order of arms
            (``results.json``; ``real`` comes first by default), arms it does not list after them alphabetically.
        fold: its fold.
        bundle_root: see :func:`publish_model`.

    Returns:
        the published file, or ``None`` when publishing is off or the study saved no models (``--save_models false``).

    Raises:
        FileNotFoundError: ``arm`` was given and has no model for ``fold``.
    """
    if not models_dir:
        return None
    root = Path(study_dir) / "models"
    if arm is not None:
        source = root / str(arm) / f"fold{int(fold)}" / "model.pt"
        if not source.is_file():
            saved = sorted(p.parent.parent.name for p in root.glob(f"*/fold{int(fold)}/model.pt"))
            raise FileNotFoundError(f"No model {source} to publish (arms with a fold{int(fold)} model: {saved}).")
    else:
        results = Path(study_dir) / "results.json"
        order = [a["name"] for a in read_json(results).get("arms", [])] if results.is_file() else []
        saved = sorted(root.glob(f"*/fold{int(fold)}/model.pt"))
        saved.sort(key=lambda p: order.index(p.parent.parent.name) if p.parent.parent.name in order else len(order))
        if not saved:
            return None
        source = saved[0]
    config = load_checkpoint(source)["config"]
    return publish_model(source, models_dir, "model.pt", metadata, segmenter_data_format(config), bundle_root, config)


def publish_generator(
    source: str | Path,
    models_dir: str | Path | None,
    metadata: Mapping[str, Any] | None = None,
    bundle_root: str | Path | None = None,
) -> Path | None:
    """Publish an exported ``generator.pt`` as ``models/generator.pt`` (see :func:`publish_model`).

    Returns:
        the published file; ``None`` when ``models_dir`` is ``None`` or ``""`` (publishing switched off) or the run
        exported nothing (e.g. it was stopped before its first export).
    """
    if not models_dir or not Path(source).is_file():
        return None
    config = load_checkpoint(source)["config"]
    return publish_model(
        source, models_dir, "generator.pt", metadata, generator_data_format(config), bundle_root, config
    )


def publish_interpreter(
    interpreter_path: str | Path,
    generator_path: str | Path,
    models_dir: str | Path | None,
    metadata: Mapping[str, Any] | None = None,
    bundle_root: str | Path | None = None,
) -> Path | None:
    """Publish ``interpreter.pt`` and the generator it reads as ``models/interpreter.pt`` + ``models/generator.pt``.

    Both files are published together so that ``models/`` never pairs an interpreter with another
    generator (the interpreter stores its generator's sha256, checked on load).

    Returns:
        the published interpreter; ``None`` when ``models_dir`` is ``None`` or ``""``.
    """
    if not models_dir:
        return None
    generator_config = load_checkpoint(generator_path)["config"]
    interpreter = load_checkpoint(interpreter_path)
    fmt = interpreter_data_format(generator_config, interpreter)
    publish_model(generator_path, models_dir, "generator.pt", metadata, fmt, bundle_root, generator_config)
    return publish_model(
        interpreter_path, models_dir, "interpreter.pt", metadata, fmt, bundle_root, interpreter["config"]
    )
