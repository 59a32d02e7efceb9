"""The arms of the downstream study: which data each segmentation network is trained on.

An *arm* is one training configuration: ``real`` (the real training cases only), ``synthetic``
(``N`` generated pairs only), ``hybrid`` (the real training cases plus ``N`` generated pairs) or
``finetune`` (pre-trained as the matching ``synthetic`` arm, then fine-tuned on the matching ``real``
arm's cases with that arm's budget), each optionally with standard augmentation. :func:`plan_arms` expands the requested kinds, generated sets,
sizes, numbers of real cases and augmentation into the list of :class:`ArmSpec` the study trains.

With ``num_real`` (the small-data regime) the real and hybrid arms use only the first ``R`` cases of a
seeded permutation of the fold's real training cases (:func:`real_case_order`), so the subsets of a
sweep are nested (the 30 are inside the 50) and every arm of one ``R`` sees the same cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

__all__ = [
    "ARM_KINDS",
    "DEFAULT_ARMS",
    "ArmSpec",
    "plan_arms",
    "arm_training_items",
    "real_case_order",
    "real_subset",
    "oversample_real",
]

ARM_KINDS = ("real", "synthetic", "hybrid", "finetune")
#: The arm kinds a study runs when ``arms`` is not given.
DEFAULT_ARMS = ("real", "synthetic", "hybrid")


@dataclass(frozen=True)
class ArmSpec:
    """One training configuration of the study.

    Attributes:
        name: unique name used in tables, figures and MLflow (``"real"``, ``"hybrid_n100"``, ``"synthetic-gan1_n20+aug"``,
            ``"finetune_r30_n500"``).
        kind: ``"real"``, ``"synthetic"``, ``"hybrid"`` or ``"finetune"``.
        synthetic_set: name of the generated set used (``None`` for ``real``).
        num_synthetic: number of generated training pairs (0 for ``real``).
        augment: standard augmentation on.
        num_real: number of real training cases (a nested subset of the fold's training cases); ``None``:
            all of them (and for ``synthetic`` arms, which use none).
        real_fraction: hybrid arms only: the real pairs are repeated so that they make up about this
            fraction of the training pairs (oversampling a few real cases); ``None``: used once each.
        pretrain_arm: finetune arms only: the name of the ``synthetic`` arm whose training is stage 1
            (same generated pairs, same budget); its best weights start stage 2.
        real_arm: finetune arms only: the name of the ``real`` arm whose real cases, validation split and
            budget stage 2 (the fine-tuning) uses.
    """

    name: str
    kind: str
    synthetic_set: str | None = None
    num_synthetic: int = 0
    augment: bool = False
    num_real: int | None = None
    real_fraction: float | None = None
    pretrain_arm: str | None = None
    real_arm: str | None = None

    @property
    def uses_real(self) -> bool:
        """The arm trains on the real training cases (``real``, ``hybrid`` and ``finetune``)."""
        return self.kind in ("real", "hybrid", "finetune")

    def pretraining(self) -> ArmSpec:
        """Stage 1 of a ``finetune`` arm: its matching ``synthetic`` arm (same generated pairs, same augmentation).

        Raises:
            ValueError: the arm is not a ``finetune`` arm.
        """
        if self.kind != "finetune" or self.pretrain_arm is None:
            raise ValueError(f"Arm {self.name!r} ({self.kind}) has no pre-training stage; only finetune arms do.")
        return ArmSpec(self.pretrain_arm, "synthetic", self.synthetic_set, self.num_synthetic, self.augment)

    def finetuning(self) -> ArmSpec:
        """Stage 2 of a ``finetune`` arm: its matching ``real`` arm (same ``R`` real cases, same augmentation).

        Raises:
            ValueError: the arm is not a ``finetune`` arm.
        """
        if self.kind != "finetune" or self.real_arm is None:
            raise ValueError(f"Arm {self.name!r} ({self.kind}) has no fine-tuning stage; only finetune arms do.")
        return ArmSpec(self.real_arm, "real", None, 0, self.augment, self.num_real)


def plan_arms(
    arms: Sequence[str],
    num_synthetic: Sequence[int],
    synthetic_pools: Mapping[str, int],
    augmentation: Sequence[bool] = (False,),
    num_real: Sequence[int | None] | None = None,
    hybrid_real_fraction: float | None = None,
) -> list[ArmSpec]:
    """Expand arm kinds x generated sets x sizes x numbers of real cases x augmentation into :class:`ArmSpec` s.

    Without ``num_real`` the arms are ``real``, ``synthetic_n<N>``, ``hybrid_n<N>``, ``finetune_n<N>`` (every
    real training case). With it, the real, hybrid and finetune arms are made once per ``R``: ``real_r30``,
    ``hybrid_r30_n1500``, ``finetune_r30_n1500`` (``None`` -> ``real_rall``, ...); synthetic arms use no real
    case and are made once (``synthetic_n1500``). With several generated sets the set is named:
    ``hybrid-dcgan_r30_n1500``, ``finetune-dcgan_r30_n1500``. A finetune arm names its two stages:
    ``pretrain_arm`` (the synthetic arm of the same set, ``N`` and augmentation, whether or not it is
    requested) and ``real_arm`` (the real arm of the same ``R`` and augmentation). With ``hybrid_real_fraction`` every hybrid arm is also made with the real pairs
    oversampled to that fraction (suffix ``_rf<fraction>``), so both are reported.

    Args:
        arms: subset of ``("real", "synthetic", "hybrid", "finetune")``.
        num_synthetic: sizes ``N`` of the generated training subsets; empty -> each set's whole pool.
        synthetic_pools: generated set name -> number of pairs available for training (test-G excluded).
        augmentation: ``[False]``, ``[True]`` or both.
        num_real: numbers ``R`` of real training cases (``None`` entries: all); ``None``: all, old names.
        hybrid_real_fraction: fraction in (0, 1) of real pairs in oversampled hybrid arms; ``None``: none.

    Returns:
        Arms in the order real (by ``R``), synthetic (by set, then ``N``), hybrid (by ``R``, set, ``N``),
        finetune (by ``R``, set, ``N``); each kind without then with augmentation.

    Raises:
        ValueError: unknown arm kinds, synthetic/hybrid/finetune arms without a generated set, sizes < 1 or larger
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
    bad_real = [
        r for r in num_real or [] if r is not None and (isinstance(r, bool) or not isinstance(r, Integral) or r < 1)
    ]
    if bad_real or (num_real is not None and not list(num_real)):
        raise ValueError(f"`num_real` must hold integers >= 1 or None (all), got {num_real}.")
    if hybrid_real_fraction is not None and not 0.0 < float(hybrid_real_fraction) < 1.0:
        raise ValueError(f"`hybrid_real_fraction` must be in (0, 1) or None, got {hybrid_real_fraction!r}.")
    reals: list[int | None] = [None] if num_real is None else [None if r is None else int(r) for r in num_real]
    fractions: list[float | None] = [None] if hybrid_real_fraction is None else [None, float(hybrid_real_fraction)]
    several = len(synthetic_pools) > 1
    specs: list[ArmSpec] = []
    for augment in dict.fromkeys(bool(a) for a in augmentation):
        suffix = "+aug" if augment else ""
        for r in reals:
            tag = "" if num_real is None else f"_r{'all' if r is None else r}"
            if "real" in kinds:
                specs.append(ArmSpec("real" + tag + suffix, "real", None, 0, augment, r))
            for kind in ("synthetic", "hybrid", "finetune"):
                if kind not in kinds or (kind == "synthetic" and r is not reals[0]):
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
                        if kind == "synthetic":
                            specs.append(ArmSpec(f"{label}_n{n}{suffix}", kind, set_name, n, augment))
                            continue
                        if kind == "finetune":
                            pretrain = f"synthetic-{set_name}" if several else "synthetic"
                            specs.append(
                                ArmSpec(f"{label}{tag}_n{n}{suffix}", kind, set_name, n, augment, r,
                                        pretrain_arm=f"{pretrain}_n{n}{suffix}", real_arm=f"real{tag}{suffix}")
                            )  # fmt: skip
                            continue
                        for f in fractions:
                            rf = "" if f is None else f"_rf{f:g}"
                            specs.append(ArmSpec(f"{label}{tag}_n{n}{rf}{suffix}", kind, set_name, n, augment, r, f))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Arm names are not unique: {names}; remove repeated `num_synthetic` / `num_real` values.")
    return sorted(
        specs,
        key=lambda s: (
            s.augment,
            ARM_KINDS.index(s.kind),
            float("inf") if s.num_real is None else s.num_real,
            s.synthetic_set or "",
            s.num_synthetic,
            s.real_fraction or 0.0,
        ),
    )


def real_case_order(real_training: Sequence[Mapping[str, Any]], seed: int = 0) -> list[str]:
    """The fold's real training cases in a seeded order; the first ``R`` are the ``R`` cases of every arm.

    The cases (``case_id``) are sorted by name, then permuted with ``numpy.random.default_rng(seed)``, so
    the order depends only on the set of cases and the seed (not on the order of the items) and the
    subsets of a ``num_real`` sweep are nested.

    Args:
        real_training: the real training items of one fold.
        seed: the study seed.

    Returns:
        Case ids, every case once.
    """
    names = sorted({str(item["case_id"]) for item in real_training})
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def real_subset(
    real_training: Sequence[Mapping[str, Any]], num_real: int | None, seed: int = 0
) -> list[Mapping[str, Any]]:
    """The items of the first ``num_real`` cases of :func:`real_case_order` (all items when ``None``).

    Args:
        real_training: the real training items of one fold.
        num_real: number of cases ``R``; ``None`` -> all.
        seed: the study seed.

    Returns:
        The items (all slices of a kept case), in their input order.

    Raises:
        ValueError: ``num_real`` is larger than the number of training cases.
    """
    if num_real is None:
        return list(real_training)
    order = real_case_order(real_training, seed)
    if num_real > len(order):
        raise ValueError(
            f"num_real={num_real} but the real training split has only {len(order)} case(s); lower `num_real` "
            "(null = all training cases), or lower val_fraction / test_fraction / folds."
        )
    keep = set(order[:num_real])
    return [item for item in real_training if str(item["case_id"]) in keep]


def arm_training_items(
    arm: ArmSpec,
    real_training: Sequence[Mapping[str, Any]],
    synthetic_pools: Mapping[str, Sequence[Mapping[str, Any]]],
    seed: int = 0,
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The training pairs of ``arm``: its real training cases and/or the first ``N`` pairs of its generated pool.

    Args:
        arm: the arm.
        real_training: the real training items of the fold.
        synthetic_pools: generated set name -> its training pool, in the study's seeded order (so the
            ``N`` pairs of a sweep are nested and the same in every fold).
        seed: the study seed (orders the real cases for ``arm.num_real``, see :func:`real_subset`).

    Returns:
        ``(real items, generated items)``, each pair once (oversampling is the trainer's business); either
        may be empty.

    Raises:
        ValueError: ``arm.num_real`` larger than the fold's training cases.
    """
    real = real_subset(real_training, arm.num_real, seed) if arm.uses_real else []
    synthetic = list(synthetic_pools[arm.synthetic_set][: arm.num_synthetic]) if arm.synthetic_set else []
    return real, synthetic


def oversample_real(
    real: Sequence[Mapping[str, Any]], num_synthetic: int, real_fraction: float | None
) -> list[Mapping[str, Any]]:
    """Repeat the real pairs so they make up about ``real_fraction`` of a hybrid training set.

    Args:
        real: the arm's real training pairs (each once).
        num_synthetic: the arm's number of generated pairs.
        real_fraction: target fraction of real pairs in (0, 1); ``None`` -> ``real`` unchanged.

    Returns:
        ``real`` repeated whole (then cut) to ``round(f / (1 - f) * num_synthetic)`` pairs, never fewer than
        ``len(real)``: every real pair is used at least once per pass.
    """
    if real_fraction is None or not real or num_synthetic < 1:
        return list(real)
    target = max(len(real), int(round(real_fraction / (1.0 - real_fraction) * num_synthetic)))
    repeats = -(-target // len(real))
    return (list(real) * repeats)[:target]
