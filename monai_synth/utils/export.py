"""The export contract: what ``generator.pt`` and ``interpreter.pt`` hold, how they are written and read.

``generator.pt`` (written by :class:`~monai_synth.handlers.GANCheckpointHandler` through
:func:`export_generator`) is ``{"state_dict", "config", "iteration"}`` where ``config`` is the
:func:`generator_export_config` of the training run::

    {"generator_class": "monai_synth.networks.nets.<Class>", "generator": <its get_config()>,
     "discriminator": <its get_config()>, "data": {"image_size", "image_channels", "num_classes",
     "label_names", "components_per_class", "intensity", "orientation"}, ["latent": {"dim", "distribution"}], ...}

``data["orientation"]`` (``{"layout", "affine", "source_format"}``, see :mod:`monai_synth.data.orientation`)
says how generated files must be written to load like the training sources; older exports lack it.

``interpreter.pt`` (:func:`save_interpreter`) is ``{"state_dict", "config", "generator_sha256",
"label_names", ...}``: the pixel-classifier ensemble and the sha256 of the generator whose features it
reads. Every file is loaded with ``torch.load(..., weights_only=True)`` (:func:`load_checkpoint`), and a
file of the wrong kind is refused with a ``ValueError`` that names it.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import torch

from monai_synth.networks.nets import PixelClassifierEnsemble, StyleGAN2Discriminator
from monai_synth.utils.io import torch_save_atomic

__all__ = [
    "GENERATOR_BUNDLES",
    "export_generator",
    "file_sha256",
    "generator_export_config",
    "load_checkpoint",
    "load_discriminator",
    "load_generator",
    "load_interpreter",
    "save_interpreter",
]

GENERATOR_BUNDLES = {
    "PairedDCGANGenerator": "paired_dcgan",
    "StyleGAN2Generator": "datasetgan",
    "SemanticStyleGAN2Generator": "semanticgan",
}
"""Generator class name -> the bundle that trains it (and whose inference / generate configs read it)."""

# config keys a generator export of each class must hold, beyond generator_class / generator / data
_REQUIRED_GENERATOR_KEYS = {
    "PairedDCGANGenerator": ("latent_dim",),
    "StyleGAN2Generator": ("mode", "z_dim"),
    "SemanticStyleGAN2Generator": ("mode", "z_dim", "num_classes"),
}
_REQUIRED_DATA_KEYS = ("image_channels", "num_classes")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable checkpoint (truncated, corrupt, or pickles code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / EOFError for damaged files
        raise ValueError(f"Checkpoint {path} cannot be read ({type(e).__name__}: {e}).") from e


def generator_export_config(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module,
    data: Any,
    latent_distribution: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``config`` of a training run: stored in its checkpoints (compared on resume) and in ``generator.pt``.

    Args:
        generator: the generator (a ``monai_synth.networks.nets`` class with ``get_config()``).
        discriminator: its discriminator.
        data: the training data (:class:`~monai_synth.data.PairedSliceDataset`: ``image_channels``,
            ``num_classes`` and ``summary``).
        latent_distribution: when given, ``config["latent"] = {"dim", "distribution"}`` (StyleGAN2 exports
            say ``"normal"``; DCGAN exports leave it out and mean U[-1, 1]).
        extra: further run settings stored at the top level (e.g. ``iterations_per_epoch``, ``batch_size``).

    Returns:
        the JSON-like config described in the module docstring.
    """
    name = type(generator).__name__
    if name not in GENERATOR_BUNDLES:
        raise ValueError(
            f"{name} is not a generator monai_synth exports (expected one of {sorted(GENERATOR_BUNDLES)})."
        )
    generator_config = generator.get_config()
    summary = data.summary
    config: dict[str, Any] = {
        "generator_class": f"monai_synth.networks.nets.{name}",
        "generator": generator_config,
        "discriminator": discriminator.get_config(),
        "data": {
            "image_size": int(generator_config["image_size"]),
            "image_channels": int(data.image_channels),
            "num_classes": int(data.num_classes),
            "label_names": summary["label_names"],
            "components_per_class": summary["components_per_class"],
            "intensity": summary["intensity"],
        },
    }
    if summary.get("orientation") is not None:  # how generated files are written: monai_synth.data.orientation
        config["data"]["orientation"] = summary["orientation"]
    if latent_distribution is not None:
        dim = generator_config.get("z_dim", generator_config.get("latent_dim"))
        config["latent"] = {"dim": int(dim), "distribution": latent_distribution}
    config.update(extra)
    return config


def export_generator(network: torch.nn.Module, config: dict[str, Any], path: str | Path, **extra: Any) -> Path:
    """Write ``{"state_dict", "config", **extra}`` atomically to ``path`` (the ``generator.pt`` format).

    Args:
        network: the network whose weights are exported (e.g. the EMA generator).
        config: the run config (:func:`generator_export_config`).
        path: output file.
        extra: further entries (the handler adds ``iteration``).

    Returns:
        ``path``.
    """
    torch_save_atomic({"state_dict": network.state_dict(), "config": config, **extra}, path)
    return Path(path)


def _check_generator_export(path: Path, checkpoint: Any, bundle: str | None) -> dict[str, Any]:
    """The export's config, or a ``ValueError`` naming the file and what is wrong with it."""
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise ValueError(
            f"{path} is not a monai_synth generator export (expected 'state_dict' and a config with "
            "'generator_class' and 'generator'); pass the generator.pt written by train.json."
        )
    config = checkpoint["config"]
    class_path = str(config.get("generator_class", ""))
    class_name = class_path.rpartition(".")[2]
    if not class_path.startswith("monai_synth.") or class_name not in GENERATOR_BUNDLES or "generator" not in config:
        raise ValueError(
            f"{path} is not a monai_synth generator export (expected 'state_dict' and a config with "
            f"'generator_class' naming one of {sorted(GENERATOR_BUNDLES)} and 'generator', got {class_path!r}); "
            "pass the generator.pt written by train.json."
        )
    source = GENERATOR_BUNDLES[class_name]
    if bundle is not None and source != bundle:
        raise ValueError(
            f"{path} is a {source} generator ({class_name}); use bundles/{source}/configs/inference.json "
            f"(or generate.json) for it, not the {bundle} bundle."
        )
    for key in _REQUIRED_GENERATOR_KEYS[class_name]:
        if key not in config["generator"]:
            raise ValueError(f"{path} is not a monai_synth generator export: missing {key!r} in its generator config.")
    for key in _REQUIRED_DATA_KEYS:
        if key not in config.get("data", {}):
            raise ValueError(f"{path} is not a monai_synth generator export: missing {key!r} in its data config.")
    return config


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", bundle: str | None = None, conditional: bool | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the generator stored in an exported ``generator.pt`` and load its weights.

    Args:
        path: the file written by a ``train.json`` (:func:`export_generator`).
        device: device of the returned network.
        bundle: when given (``"paired_dcgan"`` or ``"datasetgan"``), refuse a generator another bundle trained.
        conditional: ``False`` refuses a conditional (C-SG) generator, which needs a mask for every image
            (for callers that draw from latents alone); ``True`` refuses any other; ``None`` takes both.

    Returns:
        ``(network in eval mode on device, config)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not such an export (unreadable, keys missing, a class outside
            ``monai_synth``), comes from another bundle than ``bundle``, or is (not) conditional against
            ``conditional`` -- naming the file.
    """
    path = Path(path)
    checkpoint = load_checkpoint(path, map_location="cpu")
    config = _check_generator_export(path, checkpoint, bundle)
    mode = config["generator"].get("mode")
    if conditional is False and mode == "conditional":
        raise ValueError(
            f"{path} is a conditional (C-SG) generator: it draws images for given label masks, not from latents "
            "alone. Use it with datasetgan generate.json --mask_generator <M-SG generator.pt> or --masks_from "
            "<datalist or folder>; here an unconditional (image, paired or mask mode) generator is needed."
        )
    if conditional is True and mode != "conditional":
        raise ValueError(
            f"{path} is a {mode or 'paired'}-mode generator, not a conditional (C-SG) one (datasetgan train.json "
            "--mode conditional)."
        )
    module_name, _, class_name = config["generator_class"].rpartition(".")
    network = getattr(importlib.import_module(module_name), class_name)(**config["generator"])
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit its own generator config ({e}).") from e
    return network.to(device).eval(), config


def load_discriminator(checkpoint_path: str | Path, device: str | torch.device = "cpu") -> StyleGAN2Discriminator:
    """The StyleGAN2 discriminator of a ``datasetgan`` training checkpoint (``checkpoint_last.pt``), frozen.

    Raises:
        ValueError: the file holds no StyleGAN2 discriminator.
    """
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    config = checkpoint.get("config", {}).get("discriminator")
    state = checkpoint.get("states", {}).get("discriminator")
    if config is None or state is None or "mode" not in config:
        raise ValueError(
            f"{checkpoint_path} holds no StyleGAN2 discriminator (a datasetgan train.json checkpoint does)."
        )
    network = StyleGAN2Discriminator(**config)
    network.load_state_dict(state)
    network.eval().requires_grad_(False)
    return network.to(device)


def save_interpreter(
    ensemble: torch.nn.Module,
    path: str | Path,
    generator_sha256: str,
    label_names: dict[str, str] | None = None,
    **extra: Any,
) -> Path:
    """Write ``interpreter.pt`` atomically: ``{"state_dict", "config", "generator_sha256", "label_names", **extra}``.

    Args:
        ensemble: the trained :class:`~monai_synth.networks.nets.PixelClassifierEnsemble`.
        path: output file.
        generator_sha256: :func:`file_sha256` of the generator whose features it was trained on.
        label_names: ``{"0": "background", ...}`` (``None`` when unknown).
        extra: provenance (``annotation_source``, ``train_ids``, ``held_out_ids``).

    Returns:
        ``path``.
    """
    checkpoint = {
        "state_dict": ensemble.state_dict(),
        "config": ensemble.get_config(),
        "generator_sha256": generator_sha256,
        "label_names": label_names,
        **extra,
    }
    torch_save_atomic(checkpoint, path)
    return Path(path)


def load_interpreter(
    path: str | Path,
    generator_path: str | Path | None = None,
    device: str | torch.device = "cpu",
    generator_sha256: str | None = None,
) -> tuple[PixelClassifierEnsemble, dict[str, Any]]:
    """Build the ensemble stored in ``interpreter.pt`` in eval mode.

    Args:
        path: the file written by ``train_interpreter.json`` (:func:`save_interpreter`).
        generator_path: when given, the generator the interpreter must have been trained on (sha256 check).
        device: device of the returned ensemble.
        generator_sha256: that generator's sha256 when the caller already has it (not read again).

    Returns:
        ``(PixelClassifierEnsemble in eval mode on device, the whole checkpoint dict)``.

    Raises:
        ValueError: not an interpreter file, or trained on another generator (both files named).
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    if "state_dict" not in checkpoint or "config" not in checkpoint or "generator_sha256" not in checkpoint:
        raise ValueError(
            f"{path} is not a style-interpreter checkpoint (expected 'state_dict', 'config' and 'generator_sha256'); "
            "pass the interpreter.pt written by train_interpreter.json."
        )
    if generator_path is not None and generator_sha256 is None:
        generator_sha256 = file_sha256(generator_path)
    if generator_path is not None and generator_sha256 != checkpoint["generator_sha256"]:
        raise ValueError(
            f"{path} was trained on the features of another generator than {generator_path} (sha256 differs): its "
            "labels would not match the images. Train the interpreter again with this generator."
        )
    ensemble = PixelClassifierEnsemble(**checkpoint["config"])
    ensemble.load_state_dict(checkpoint["state_dict"])
    return ensemble.to(device).eval(), checkpoint
