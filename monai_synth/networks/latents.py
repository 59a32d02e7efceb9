"""The one latent sampler: ``z`` vectors from U[-1, 1] (DCGAN) or N(0, 1) (StyleGAN2), by seed or from a stream.

Every caller draws latents here: the generation factories and inferers (:func:`latents_from_seeds`, one
``torch.Generator`` per seed, so a pair is reproducible alone), the trainers and
``StyleGAN2Generator.sample_z`` (:func:`sample_latents` on their own seeded generator). Changing the
arithmetic here changes every generated set: ``tests/networks/test_latents.py`` holds stored values.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

__all__ = ["LATENT_DISTRIBUTIONS", "latents_from_seeds", "sample_latents"]

LATENT_DISTRIBUTIONS = ("uniform", "normal")
"""``"uniform"``: U[-1, 1) (Neff et al.'s DCGAN); ``"normal"``: N(0, 1) (StyleGAN2)."""


def sample_latents(
    num: int,
    latent_dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    distribution: str = "uniform",
) -> torch.Tensor:
    """Draw ``num`` latent vectors from U[-1, 1], the paper's noise distribution (or N(0, 1) for StyleGAN2).

    Samples are drawn on the device of ``generator`` (CPU when none is given, or ``device`` when no
    generator is given) and then moved to ``device``, so a seeded CPU generator gives the same
    vectors whatever device the network runs on.

    Args:
        num: number of vectors ``B`` (may be 0).
        latent_dim: vector length (400 in the paper).
        generator: optional seeded ``torch.Generator``; ``None`` uses the global RNG.
        device: device of the returned tensor.
        distribution: ``"uniform"`` (U[-1, 1), Neff et al.) or ``"normal"`` (N(0, 1), StyleGAN2).

    Returns:
        float32 tensor ``(B, latent_dim)`` with values in [-1, 1) (uniform).

    Raises:
        ValueError: negative ``num``, ``latent_dim < 1`` or an unknown ``distribution``.
    """
    if distribution not in LATENT_DISTRIBUTIONS:
        raise ValueError(f"sample_latents: distribution must be 'uniform' or 'normal', got {distribution!r}.")
    if isinstance(num, bool) or int(num) != num or num < 0:
        raise ValueError(f"sample_latents: num must be an integer >= 0, got {num!r}.")
    if isinstance(latent_dim, bool) or int(latent_dim) != latent_dim or latent_dim < 1:
        raise ValueError(f"sample_latents: latent_dim must be an integer >= 1, got {latent_dim!r}.")
    draw_device = generator.device if generator is not None else device
    if distribution == "normal":
        z = torch.randn(int(num), int(latent_dim), generator=generator, device=draw_device, dtype=torch.float32)
    else:
        z = torch.rand(int(num), int(latent_dim), generator=generator, device=draw_device, dtype=torch.float32)
        z = z.mul_(2.0).sub_(1.0)
    return z if device is None else z.to(device)


def latents_from_seeds(
    seeds: Sequence[int], latent_dim: int, device: torch.device | str | None = None, distribution: str = "uniform"
) -> torch.Tensor:
    """One U[-1, 1] (or, with ``distribution="normal"``, N(0, 1)) latent vector per seed, each from its own ``torch.Generator``.

    Row ``i`` depends only on ``seeds[i]``, never on the other seeds in the batch, the batch size or
    the global RNG state, so a sample regenerated alone, in another batch or in a resumed sharded run
    is identical (generation is idempotent per seed).

    Args:
        seeds: integer seeds (``torch.Generator.manual_seed`` range).
        latent_dim: vector length.
        device: device of the returned tensor (vectors are always drawn on CPU).

    Returns:
        float32 tensor ``(len(seeds), latent_dim)`` in [-1, 1).

    Raises:
        ValueError: a seed is not an integer, or ``latent_dim < 1``.

    Example::

        z = latents_from_seeds([0, 1, 2], latent_dim=400)
        assert torch.equal(z[1:2], latents_from_seeds([1], latent_dim=400))
    """
    rows = []
    for seed in seeds:
        try:
            if isinstance(seed, bool):
                raise TypeError
            seed = operator.index(seed)  # ints, numpy / torch integer scalars; not floats or bools
        except TypeError:
            raise ValueError(
                f"latents_from_seeds: seeds must be integers, got {seed!r} ({type(seed).__name__})."
            ) from None
        rows.append(
            sample_latents(1, latent_dim, generator=torch.Generator().manual_seed(seed), distribution=distribution)
        )
    if not rows:
        return sample_latents(0, latent_dim, device=device, distribution=distribution)
    z = torch.cat(rows, dim=0)
    return z if device is None else z.to(device)
