"""Paired generation inferer: latents -> raw (image + mask) pairs, and the seed -> latent batch preparation."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

from monai_synth.networks.latents import latents_from_seeds

__all__ = ["PairedGenerationInferer", "SeedLatents", "latent_spec"]


def latent_spec(config: dict[str, Any]) -> tuple[int, str]:
    """``(latent size, "uniform" | "normal")`` of an exported generator's config.

    StyleGAN2 exports store ``{"latent": {"dim", "distribution"}}``; DCGAN exports (U[-1, 1]) have only
    ``generator.latent_dim``.
    """
    latent = config.get("latent")
    if latent:
        return int(latent["dim"]), str(latent.get("distribution", "uniform"))
    return int(config["generator"]["latent_dim"]), "uniform"


class SeedLatents:
    """``prepare_batch`` for MONAI evaluators: a batch ``{"seed": (B,)}`` -> latents of those seeds.

    Args:
        latent_dim: latent size of the generator.
        distribution: ``"uniform"`` (DCGAN) or ``"normal"`` (StyleGAN2).
    """

    def __init__(self, latent_dim: int, distribution: str = "uniform") -> None:
        self.latent_dim = int(latent_dim)
        self.distribution = distribution

    def __call__(self, batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs):
        """``(latents (B, latent_dim) on device, None)`` -- no target: generation has no label to compare to."""
        seeds = [int(s) for s in torch.as_tensor(batchdata["seed"]).reshape(-1)]
        return latents_from_seeds(seeds, self.latent_dim, device=device, distribution=self.distribution), None


class PairedGenerationInferer(Inferer):
    """MONAI ``Inferer`` running a paired generator on latents and returning the raw pairs.

    ``inferer(latents (B, latent_dim), network) -> (B, C + M, H, W)`` in [-1, 1] under ``no_grad``;
    decoding and post-processing belong to the evaluator's ``postprocessing``
    (:func:`~monai_synth.apps.generation.pair_postprocessing`) so they can be swapped in the config.

    Args:
        network_kwargs: extra keyword arguments for every network call (e.g. ``{"truncation_psi": 0.7}``
            for a StyleGAN2 generator).
    """

    def __init__(self, network_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.network_kwargs = dict(network_kwargs or {})

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            return network(inputs, *args, **{**self.network_kwargs, **kwargs}).float()
