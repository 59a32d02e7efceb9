"""The arms of the downstream study: which data each segmentation network is trained on.

An *arm* is one training configuration: ``real`` (the real training cases only), ``synthetic``
(``N`` generated pairs only) or ``hybrid`` (the real training cases plus ``N`` generated pairs), each
optionally with standard augmentation. :func:`plan_arms` expands the requested kinds, generated sets,
sizes and augmentation into the list of :class:`ArmSpec` the study trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

__all__ = ["ARM_KINDS", "ArmSpec", "plan_arms", "arm_training_items"]

ARM_KINDS = ("real", "synthetic", "hybrid")


@dataclass(frozen=True)
class ArmSpec:
    """One training configuration of the study.

    Attributes:
        name: unique name used in tables, figures and MLflow (``"real"``, ``"hybrid_n100"``, ``"synthetic-gan1_n20+aug"``).
        kind: ``"real"``, ``"synthetic"`` or ``"hybrid"``.
        synthetic_set: name of the generated set used (``None`` for ``real``).
        num_synthetic: number of generated training pairs (0 for ``real``).
        augment: standard augmentation on.
    """

    name: str
    kind: str
    synthetic_set: str | None = None
    num_synthetic: int = 0
    augment: bool = False

    @property
    def uses_real(self) -> bool:
        """The arm trains on the real training cases (``real`` and ``hybrid``)."""
        return self.kind in ("real", "hybrid")


def plan_arms(
    arms: Sequence[str],
    num_synthetic: Sequence[int],
    synthetic_pools: Mapping[str, int],
    augmentation: Sequence[bool] = (False,),
) -> list[ArmSpec]:
    """Expand arm kinds x generated sets x sizes x augmentation into :class:`ArmSpec` s.

    Args:
        arms: subset of ``("real", "synthetic", "hybrid")``.
        num_synthetic: sizes ``N`` of the generated training subsets; empty -> each set's whole pool.
        synthetic_pools: generated set name -> number of pairs available for training (test-G excluded).
        augmentation: ``[False]``, ``[True]`` or both.

    Returns:
        Arms in the order real, synthetic (by set, then ``N``), hybrid (by set, then ``N``); each kind
        without then with augmentation.

    Raises:
        ValueError: unknown arm kinds, synthetic/hybrid arms without a generated set, sizes < 1 or larger
            than a pool (the pool and what to do are named).
    """
    kinds = [str(a).strip().lower() for a in arms]
    unknown = sorted(set(kinds) - set(ARM_KINDS))
    if unknown or not kinds:
        raise ValueError(f"`arms` must be a non-empty subset of {list(ARM_KINDS)}, got {list(arms)}.")
    needs_synthetic = [k for k in kinds if k != "real"]
    if needs_synthetic and not synthetic_pools:
        raise ValueError(
            f"arms {needs_synthetic} need a generated set: give `synthetic_datalist` (a generated datalist.json, "
            "e.g. from the paired_dcgan bundle's generate.json), or keep only arms=['real']."
        )
    bad_sizes = [n for n in num_synthetic if isinstance(n, bool) or not isinstance(n, Integral) or n < 1]
    if bad_sizes:
        raise ValueError(f"`num_synthetic` must hold integers >= 1, got {list(num_synthetic)}.")
    several = len(synthetic_pools) > 1
    specs: list[ArmSpec] = []
    for augment in dict.fromkeys(bool(a) for a in augmentation):
        suffix = "+aug" if augment else ""
        if "real" in kinds:
            specs.append(ArmSpec("real" + suffix, "real", None, 0, augment))
        for kind in ("synthetic", "hybrid"):
            if kind not in kinds:
                continue
            for set_name, pool in synthetic_pools.items():
                for n in [int(n) for n in num_synthetic] or [pool]:
                    if n > pool:
                        raise ValueError(
                            f"num_synthetic={n} but the generated set {set_name!r} has only {pool} pair(s) for "
                            "training (after holding out test-G with `synthetic_test_fraction`); lower "
                            "`num_synthetic`, generate more pairs, or lower `synthetic_test_fraction`."
                        )
                    label = f"{kind}-{set_name}" if several else kind
                    specs.append(ArmSpec(f"{label}_n{n}{suffix}", kind, set_name, n, augment))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Arm names are not unique: {names}; remove repeated `num_synthetic` values.")
    return sorted(specs, key=lambda s: (s.augment, ARM_KINDS.index(s.kind), s.synthetic_set or "", s.num_synthetic))


def arm_training_items(
    arm: ArmSpec, real_training: Sequence[Mapping[str, Any]], synthetic_pools: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The training pairs of ``arm``: the real training cases and/or the first ``N`` pairs of its generated pool.

    Args:
        arm: the arm.
        real_training: the real training items of the fold.
        synthetic_pools: generated set name -> its training pool, in the study's seeded order (so the
            ``N`` pairs of a sweep are nested and the same in every fold).

    Returns:
        ``(real items, generated items)``; either may be empty.
    """
    real = list(real_training) if arm.uses_real else []
    synthetic = list(synthetic_pools[arm.synthetic_set][: arm.num_synthetic]) if arm.synthetic_set else []
    return real, synthetic
