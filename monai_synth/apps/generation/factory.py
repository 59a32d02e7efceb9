"""The labelled-data factory shared by every generator: sharded, resumable NIfTI pairs + datalist + manifest."""

from __future__ import annotations

import logging
import platform
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose

from monai_synth.data import orientation as orient
from monai_synth.data.deduplication import DuplicateFilter, duplicate_rate, hash_from_text, hash_to_text
from monai_synth.engines import distributed
from monai_synth.inferers import latent_spec
from monai_synth.networks.latents import latents_from_seeds
from monai_synth.utils.export import file_sha256, load_generator
from monai_synth.utils.io import read_json, write_json_atomic
from monai_synth.utils.locking import LockHeldError, RunLock
from monai_synth.utils.visualize import to_uint8

from .postprocessing import pair_postprocessing, resolve_num_components

__all__ = ["OUTPUT_FORMATS", "PairedDatasetFactory", "sample_seed"]

logger = logging.getLogger(__name__)

_SEEDS_PER_RUN = 1_000_000
LOCK_NAME = ".lock"
#: File formats of generated pairs: NIfTI (float images) or the source's PNG (8-bit images).
OUTPUT_FORMATS = ("nifti", "png")


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` in a generation run started with ``seed`` (``seed * 10**6 + index``)."""
    if not 0 <= index < _SEEDS_PER_RUN:
        raise ValueError(f"sample index {index} is outside [0, {_SEEDS_PER_RUN}); use another `seed` for more samples.")
    return int(seed) * _SEEDS_PER_RUN + int(index)


class PairedDatasetFactory:
    """The labelled-data factory: ``num_samples`` generated pairs as NIfTI + a MONAI datalist + a manifest.

    Sample ``i`` uses latent seed ``seed * 10**6 + i``. The generator always runs full batches of
    ``batch_size`` consecutive samples on a fixed grid (batch ``k`` is samples ``[k * B, (k + 1) * B)``;
    the last batch of a shard is padded with the following seeds, the extras discarded), with the global
    RNG seeded from the batch's first seed, so sample ``i`` is always computed in the same batch at the
    same position. The promise: for a given ``batch_size`` a pair is bit-identical whatever the sharding,
    resumption or extension; across batch sizes or machines labels are identical and images equal to
    float tolerance (CPU kernels round differently for other batch shapes). A ``shard_size`` that is a
    multiple of ``batch_size`` wastes no padding.

    Work is cut in shards of ``shard_size`` samples; a shard's files are written atomically, then its
    record ``shards/shard_XXXXX.json``. A killed run resumes at the first shard without a record, and the
    de-duplication state is restored from the previous record, so decisions equal an uninterrupted
    run's. Asking for more samples later extends the set; asking for fewer shrinks it: after the new
    datalist and manifest are written, the pairs and shard records beyond ``num_samples`` are removed
    (a warning says how many; a rerun finishes a removal cut short by a kill). A run holds
    ``<output_dir>/.lock`` (``fcntl.flock``, released when the process dies, even by ``kill -9``); a
    second run on the same folder stops at once with :class:`~monai_synth.utils.locking.LockHeldError`.

    Output folder::

        generation.json          settings fingerprint (generator sha256, seed, post-processing, dedup)
        .lock                    while a run writes the folder: its pid and host
        pairs/<id>_image.nii.gz  image float32 in [-1, 1] (C > 1: <id>_image_c0.nii.gz, ... one per channel)
        pairs/<id>_label.nii.gz  uint8 labels 0..K-1 (after post-processing)
        pairs/<id>_*.png         with save_png (previews); with output_format="png" the pairs themselves:
                                 <id>_image.png (8-bit, [-1, 1] -> 0..255; C > 1: <id>_image_c0.png, ...)
                                 and <id>_label.png (label values 0..K-1), for PNG-trained generators
        shards/shard_XXXXX.json  per-shard records (resume points)
        shards/shard_XXXXX.draft.json  under torchrun, while a run is under way: a shard drawn by one
                                 rank, before rank 0 made its duplicate decisions
        manifest.json            per pair: id, seed, kept/reason, duplicate_of, hash distance,
                                 post-processing change fraction, label fractions; plus summary
        datalist.json            {"training": [{"image", "label", "case_id", "seed"}, ...]} of kept pairs

    Files follow the orientation contract of :mod:`monai_synth.data.orientation`: read with MONAI's
    default ``LoadImaged`` + ``EnsureChannelFirstd`` they have the orientation of the training sources
    (``(C, H, W)`` images beside ``(1, H, W)`` labels) and NIfTI files carry the source slice geometry.

    Under ``torchrun`` (``torchrun --standalone --nproc_per_node=N -m monai.bundle run --config_file
    configs/generate.json``) :meth:`run` joins the process group and splits the shards: rank ``r`` draws,
    post-processes and writes the pairs of shards ``r, r + N, ...`` into draft records
    (``shards/shard_XXXXX.draft.json``, with each image's perceptual hash); then rank 0 alone walks the
    shards in order, makes the near-duplicate decisions an uninterrupted single-process run would make
    (removing the files of duplicates), writes the shard records, the datalist and the manifest. Each
    requested pair is drawn by exactly one rank; rank 0 holds the lock for the whole run. A killed run
    resumes from the finished records and the complete drafts.

    Args:
        generator_path: exported ``generator.pt`` (see :func:`~monai_synth.utils.export.load_generator`).
        output_dir: output folder; refused if it holds a set made with other settings.
        num_samples: number of pairs to generate (duplicates are dropped from the datalist, so the
            datalist may hold fewer; the manifest says why each was dropped).
        seed: run seed.
        batch_size: generator batch size; pairs are bit-identical only between runs with the same value.
        shard_size: samples per shard (resume granularity); best a multiple of ``batch_size``.
        threshold: binary mask threshold in [-1, 1] (Neff et al. used 150/255, i.e. about 0.18).
        postprocess: keep the largest component(s) per class and fill holes.
        num_components: components kept per class, or ``"auto"``: the largest typical count seen in
            the training masks (stored in the generator export; 2 for one label covering both lungs).
        dedup: drop perceptual-hash near-duplicates of earlier kept pairs.
        dedup_max_distance: hash bits within which two images are duplicates.
        dedup_hash_size: perceptual-hash size (16 separates distinct phantoms; see
            :mod:`monai_synth.data.deduplication`).
        save_png: also write PNG previews of each pair.
        device: generation device.
        id_prefix: prefix of pair ids (``<prefix>_<index>`` for seed 0, ``<prefix>_s<seed>_<index>`` otherwise).
        output_format: ``"nifti"`` (float32 images in [-1, 1]) or ``"png"`` (8-bit images and label PNGs in the
            source's own format, loading like the source PNGs with MONAI's ``LoadImage``; intensities are
            quantised to 256 levels).

    Raises:
        ValueError: bad counts, an unknown ``output_format``.
    """

    def __init__(
        self,
        generator_path: str | Path,
        output_dir: str | Path,
        num_samples: int = 100,
        seed: int = 0,
        batch_size: int = 64,
        shard_size: int = 256,
        threshold: float = 0.0,
        postprocess: bool = True,
        num_components: int | str = "auto",
        dedup: bool = True,
        dedup_max_distance: int = 12,
        dedup_hash_size: int = 16,
        save_png: bool = False,
        device: str | torch.device = "cpu",
        id_prefix: str = "syn",
        output_format: str = "nifti",
    ) -> None:
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {list(OUTPUT_FORMATS)}, got {output_format!r}.")
        for name, value, low in (
            ("num_samples", num_samples, 1),
            ("batch_size", batch_size, 1),
            ("shard_size", shard_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        if num_samples > _SEEDS_PER_RUN:
            raise ValueError(f"num_samples must be <= {_SEEDS_PER_RUN} per seed, got {num_samples}.")
        self.generator_path = Path(generator_path)
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self.seed = int(seed)
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.save_png = bool(save_png)
        self.device = torch.device(device)
        self.id_prefix = id_prefix
        self.output_format = output_format
        self._batch_cache: tuple[int, tuple[list[Any], list[dict[str, Any]]]] | None = None
        self.network, self.config = load_generator(self.generator_path, self.device)
        data = self.config.get("data", {})
        self.image_channels = int(data["image_channels"])
        self.num_classes = int(data["num_classes"])
        self.mode = self.config.get("generator", {}).get("mode", "paired")
        self.orientation = orient.export_orientation(self.config, self.generator_path)
        self._check_mode()
        self.latent_dim, self.latent_distribution = latent_spec(self.config)
        num_components = resolve_num_components(num_components, self.config)
        self.threshold = float(threshold)
        self.num_components = num_components if postprocess else None
        self.postprocessing = self._postprocessing()
        self.dedup_settings = {"max_distance": dedup_max_distance, "hash_size": dedup_hash_size} if dedup else None
        self.fingerprint = {
            "generator_sha256": file_sha256(self.generator_path),
            "seed": self.seed,
            "shard_size": shard_size,
            "threshold": float(threshold),
            "postprocess": {"enabled": bool(postprocess), "num_components": num_components},
            "dedup": self.dedup_settings,
            "id_prefix": id_prefix,
            "save_png": self.save_png,
        }
        if output_format != "nifti":  # only then: sets made before the option keep their fingerprint
            self.fingerprint["output_format"] = output_format

    def _check_mode(self) -> None:
        if self.mode == "conditional":
            raise ValueError(
                f"{self.generator_path} is a conditional (C-SG) generator: it draws images for given masks. Give the "
                "masks' source: --mask_generator <M-SG generator.pt> (MC-SG) or --masks_from <datalist or folder>."
            )
        if self.mode not in ("paired", "mask"):
            raise ValueError(
                f"{self.generator_path} is a {self.mode}-mode generator: it does not draw image + mask pairs. The "
                "paired-data factory needs a paired generator (paired_dcgan, or datasetgan train.json --mode paired); "
                "for an image-mode StyleGAN2 train a style interpreter (datasetgan train_interpreter.json) and give "
                "its interpreter.pt to generate.json."
            )

    def _postprocessing(self) -> Compose:
        """Decode -> post-process chain of one drawn item (:func:`pair_postprocessing`, as in ``inference.json``)."""
        return pair_postprocessing(
            self.image_channels,
            self.num_classes,
            mode="mask" if self.mode == "mask" else "paired",
            threshold=self.threshold,
            num_components=self.num_components,
        )

    def _latents(self, seeds: list[int]) -> torch.Tensor:
        return latents_from_seeds(seeds, self.latent_dim, device=self.device, distribution=self.latent_distribution)

    def _draw(self, seeds: list[int]) -> tuple[list[Any], list[dict[str, Any]]]:
        """What the generator draws for these seeds, one item per seed for :attr:`postprocessing` (here the
        raw pair ``(C + M, H, W)``), and per item extra manifest fields (none here)."""
        pairs = self.network(self._latents(seeds)).float().cpu()
        return list(pairs), [{} for _ in seeds]

    def _select(self, entries: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        """Run-level selection after every shard exists: ``(entries, summary fields)``; keeps all here."""
        return entries, {}

    def _label_names(self) -> dict[str, str]:
        names = self.config.get("data", {}).get("label_names")
        if not names or len(names) != self.num_classes:
            names = {str(i): f"label_{i}" for i in range(self.num_classes)}
        return names

    def _refuse_foreign_folder(self, ignore_hidden: bool = False) -> None:
        """Refuse a folder that holds files but no ``generation.json`` (not a generated set).

        ``ignore_hidden`` skips hidden names: before the lock is taken, another run may be between its lock
        file and its ``generation.json`` (whose atomic temporary file is hidden).
        """
        if (self.output_dir / "generation.json").is_file() or not self.output_dir.is_dir():
            return
        if any(
            p.name != LOCK_NAME and not (ignore_hidden and p.name.startswith(".")) for p in self.output_dir.iterdir()
        ):
            raise ValueError(
                f"{self.output_dir} is not empty and holds no generation.json; refusing to write a generated set "
                "into it. Choose an empty or new output_dir."
            )

    def _check_output_dir(self) -> None:
        marker = self.output_dir / "generation.json"
        if marker.is_file():
            saved = read_json(marker).get("fingerprint")
            if saved != self.fingerprint:
                changed = sorted(
                    k
                    for k in set(saved or {}) | set(self.fingerprint)
                    if (saved or {}).get(k) != self.fingerprint.get(k)
                )
                raise ValueError(
                    f"{self.output_dir} already holds a generated set made with other settings ({', '.join(changed)} "
                    "differ); nothing was overwritten. Choose another output_dir or delete that folder."
                )
            return
        self._refuse_foreign_folder()
        write_json_atomic(marker, {"fingerprint": self.fingerprint, "config": self.config})

    def _lock(self) -> RunLock:
        """Take ``<output_dir>/.lock`` for the whole run.

        Raises:
            LockHeldError: another run is writing this folder (nothing has been written then).
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            return RunLock(self.output_dir / LOCK_NAME).acquire()
        except LockHeldError as err:
            held = err
        # raised outside the handler, so the message a user reads last is this one, not the lock's
        pid = held.pid if held.pid is not None else "unknown"
        host = held.host if held.host is not None else "unknown"
        raise LockHeldError(
            f"{self.output_dir} is being written by another generate run (pid {pid} on host {host}); wait for it "
            "or use another --output_dir.",
            held.path,
            held.pid,
            held.host,
        )

    def _pair_id(self, index: int) -> str:
        # ids are unique across run seeds, so sets generated with different seeds can meet in one study
        return f"{self._id_stem()}{index:06d}"

    def _id_stem(self) -> str:
        return f"{self.id_prefix}_" if self.seed == 0 else f"{self.id_prefix}_s{self.seed}_"

    def _stale(self, num_shards: int) -> tuple[list[Path], list[Path], set[int]]:
        """What a larger earlier run left beyond this run's set: ``(shard records, pair files, pair indices)``.

        Shard records ``>= num_shards``, pair files of indices ``>= num_samples``; the indices also
        cover the pairs those records list (near-duplicates have no files).
        """
        records, files, indices = [], [], set()
        for path in sorted((self.output_dir / "shards").glob("shard_*.json")):
            match = re.fullmatch(r"shard_(\d+)\.json", path.name)
            if match and int(match[1]) >= num_shards:
                records.append(path)
                try:
                    indices |= {int(e["index"]) for e in read_json(path)["pairs"]}
                except (OSError, ValueError, KeyError, TypeError):
                    pass
        pattern = re.compile(rf"{re.escape(self._id_stem())}(\d+)_(image(?:_c\d+)?|label)\.(nii\.gz|png)")
        if (self.output_dir / "pairs").is_dir():
            for path in sorted((self.output_dir / "pairs").iterdir()):
                match = pattern.fullmatch(path.name)
                if match and int(match[1]) >= self.num_samples:
                    files.append(path)
                    indices.add(int(match[1]))
        return records, files, {i for i in indices if i >= self.num_samples}

    def _shard_path(self, shard: int) -> Path:
        return self.output_dir / "shards" / f"shard_{shard:05d}.json"

    def _load_shard(self, shard: int) -> dict | None:
        path = self._shard_path(shard)
        if not path.is_file():
            return None
        record = read_json(path)
        for entry in record["pairs"]:
            files = [f for k in ("image", "label") for f in np.atleast_1d(entry.get(k) or [])]
            if entry["kept"] and not all((self.output_dir / f).is_file() for f in files):
                logger.warning("%s lists files that are missing; regenerating shard %d.", path, shard)
                return None
        return record

    def _seed_of(self, index: int) -> int:
        """Latent seed of grid position ``index`` (padding past the last index stays unique, it is discarded)."""
        return self.seed * _SEEDS_PER_RUN + index

    @contextmanager
    def _seeded_rng(self, seed: int) -> Iterator[None]:
        """Global RNG seeded from ``seed`` inside, restored after: any randomness a network draws (random
        noise, dropout) is a function of the batch's seeds, and the caller's RNG stream is untouched."""
        cuda = self.device.type == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.random.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(devices[0]):
                    torch.cuda.manual_seed(seed)
            yield

    @torch.no_grad()
    def _draw_batch(self, batch: int) -> tuple[list[Any], list[dict[str, Any]]]:
        """Items and manifest extras of grid batch ``batch``: indices ``[batch * B, (batch + 1) * B)``, always full.

        Every pair is computed in the same batch, at the same position, whatever the sharding, resumption
        or extension, so its bytes never depend on them. The last batch drawn is kept, so a batch that
        straddles two shards is drawn once per run.
        """
        if self._batch_cache is not None and self._batch_cache[0] == batch:
            return self._batch_cache[1]
        first = batch * self.batch_size
        seeds = [self._seed_of(i) for i in range(first, first + self.batch_size)]
        with self._seeded_rng(seeds[0]):
            drawn = self._draw(seeds)
        self._batch_cache = (batch, drawn)
        return drawn

    def _generate_shard(self, shard: int, dedup: DuplicateFilter | None) -> dict:
        draft = self._load_draft(shard)
        if draft is not None:  # drawn by a rank of a torchrun run
            return self._finish_draft(shard, draft, dedup)
        start, stop = shard * self.shard_size, min((shard + 1) * self.shard_size, self._total)
        entries = []
        for batch in range(start // self.batch_size, -(-stop // self.batch_size)):
            items, extras = self._draw_batch(batch)
            first = batch * self.batch_size
            for index in range(max(start, first), min(stop, first + self.batch_size)):
                position = index - first
                sample = sample_seed(self.seed, index)
                entries.append(self._finish_pair(index, sample, items[position], dedup, extras[position]))
        record = {"shard": shard, "pairs": entries, "dedup_state": dedup.state_dict() if dedup else None}
        write_json_atomic(self._shard_path(shard), record)
        return record

    def _pair(
        self, index: int, sample: int, item: Any, extra: dict | None = None
    ) -> tuple[dict, np.ndarray, np.ndarray]:
        """Post-process one drawn item: ``(manifest entry without decision or files, image, label)``."""
        out = self.postprocessing({"pred": item})
        label = np.asarray(out["gen_label"])
        # a mask generator (M-SG) draws no image: its masks are written alone and de-duplicated as pictures
        image = np.asarray(
            out["gen_image"] if "gen_image" in out else label / max(1, self.num_classes - 1) * 2.0 - 1.0,
            dtype=np.float32,
        )
        change = out.get("postprocess_change", 0.0)
        entry: dict[str, Any] = {
            "id": self._pair_id(index),
            "index": index,
            "seed": sample,
            "postprocess_change": round(float(change), 6),
            **(extra or {}),
        }
        entry["label_fractions"] = (
            (np.bincount(label.ravel().astype(np.int64), minlength=self.num_classes) / label.size).round(5).tolist()
        )
        return entry, image, label

    def _write_pair(self, entry: dict, image: np.ndarray, label: np.ndarray) -> None:
        """Write the pair's files (orientation contract; C > 1: one image file per channel) into ``entry``."""
        pair_id = entry["id"]
        if self.mode == "mask":  # an M-SG draws masks only: the label file alone, no image in the datalist
            entry["image"], entry["label"] = None, f"pairs/{pair_id}_label.nii.gz"
            orient.save_label(self.output_dir / entry["label"], label, self.orientation)
            return
        if self.output_format == "png":
            suffixes = [""] if image.shape[0] == 1 else [f"_c{c}" for c in range(image.shape[0])]
            names = [f"pairs/{pair_id}_image{suffix}.png" for suffix in suffixes]
            for name, channel in zip(names, image):
                orient.save_preview(self.output_dir / name, to_uint8(channel), self.orientation)
            entry["image"] = names[0] if len(names) == 1 else names
            entry["label"] = f"pairs/{pair_id}_label.png"
            orient.save_preview(self.output_dir / entry["label"], label.reshape(label.shape[-2:]).astype(np.uint8),
                                self.orientation)  # fmt: skip
            return
        written = orient.save_image(self.output_dir / f"pairs/{pair_id}_image.nii.gz", image, self.orientation)
        names = [f"pairs/{p.name}" for p in written]
        entry["image"] = names[0] if len(names) == 1 else names
        entry["label"] = f"pairs/{pair_id}_label.nii.gz"
        orient.save_label(self.output_dir / entry["label"], label, self.orientation)
        if self.save_png:
            orient.save_preview(self.output_dir / f"pairs/{pair_id}_image.png", to_uint8(image[0]), self.orientation)
            orient.save_preview(
                self.output_dir / f"pairs/{pair_id}_label.png", label[0].astype(np.uint8), self.orientation
            )

    @staticmethod
    def _decide(entry: dict, decision: tuple[bool, Any, int | None]) -> bool:
        """Record a duplicate decision in ``entry``; ``True`` when the pair is kept."""
        is_dup, dup_of, distance = decision
        entry.update({"duplicate_of": dup_of if is_dup else None, "hash_distance": distance})
        if is_dup:
            entry.update({"kept": False, "reason": f"near-duplicate of {dup_of} ({distance} hash bits)"})
        return not is_dup

    def _finish_pair(self, index: int, sample: int, item: Any, dedup, extra: dict | None = None) -> dict:
        entry, image, label = self._pair(index, sample, item, extra)
        if dedup is not None and not self._decide(entry, dedup.check(image, item_id=entry["id"])):
            return entry
        entry.update({"kept": True, "reason": None})
        self._write_pair(entry, image, label)
        return entry

    # ------------------------------------------------------------------ torchrun: drafts drawn by every rank
    def _draft_path(self, shard: int) -> Path:
        return self.output_dir / "shards" / f"shard_{shard:05d}.draft.json"

    def _load_draft(self, shard: int) -> dict | None:
        """A complete draft of ``shard`` whose files all exist, else ``None``."""
        path = self._draft_path(shard)
        if not path.is_file():
            return None
        draft = read_json(path)
        expected = min(self.shard_size, self._total - shard * self.shard_size)
        files = [f for e in draft["pairs"] for k in ("image", "label") for f in np.atleast_1d(e.get(k) or [])]
        if len(draft["pairs"]) != expected or not all((self.output_dir / f).is_file() for f in files):
            return None
        return draft

    def _draft_shard(self, shard: int, hasher: DuplicateFilter | None) -> None:
        """Draw, post-process and write every pair of ``shard`` (decisions pending) to its draft record."""
        start, stop = shard * self.shard_size, min((shard + 1) * self.shard_size, self._total)
        entries = []
        for batch in range(start // self.batch_size, -(-stop // self.batch_size)):
            items, extras = self._draw_batch(batch)
            first = batch * self.batch_size
            for index in range(max(start, first), min(stop, first + self.batch_size)):
                entry, image, label = self._pair(
                    index, sample_seed(self.seed, index), items[index - first], extras[index - first]
                )
                if hasher is not None:
                    entry["hash"] = hash_to_text(hasher.image_hash(image))
                self._write_pair(entry, image, label)
                entries.append(entry)
        write_json_atomic(self._draft_path(shard), {"shard": shard, "pairs": entries})

    def _finish_draft(self, shard: int, draft: dict, dedup: DuplicateFilter | None) -> dict:
        """Rank 0: the duplicate decisions of a drafted shard, in index order; duplicates' files removed."""
        entries = []
        for drafted in draft["pairs"]:
            files = {k: drafted.pop(k) for k in ("image", "label")}
            image_hash = drafted.pop("hash", None)
            entry = dict(drafted)
            if dedup is not None and not self._decide(entry, dedup.check_hash(hash_from_text(image_hash), entry["id"])):
                for name in [f for f in files.values() for f in np.atleast_1d(f)]:
                    (self.output_dir / name).unlink(missing_ok=True)
                    (self.output_dir / name.replace(".nii.gz", ".png")).unlink(missing_ok=True)
                entries.append(entry)
                continue
            entry.update({"kept": True, "reason": None, **files})
            entries.append(entry)
        record = {"shard": shard, "pairs": entries, "dedup_state": dedup.state_dict() if dedup else None}
        write_json_atomic(self._shard_path(shard), record)
        self._draft_path(shard).unlink(missing_ok=True)
        return record

    def run(self) -> dict[str, Any]:
        """Generate (or resume, extend or shrink) the set and write ``manifest.json`` and ``datalist.json``.

        The run holds ``<output_dir>/.lock``; files of a larger earlier run beyond ``num_samples`` are
        removed after the datalist and manifest are written (a warning says how many).

        Returns:
            the summary stored in the manifest (counts, duplicate rate, timing).

        Under ``torchrun`` every rank calls it (see the class docstring); every rank returns the summary.

        Raises:
            ValueError: ``output_dir`` holds a set made with other settings, or files that are not a set.
            LockHeldError: another run is writing ``output_dir``; nothing was written.
        """
        joined = not distributed.is_distributed() and distributed.init_distributed()
        try:
            if distributed.is_distributed():
                return self._run_distributed()
        finally:
            if joined:
                distributed.destroy_distributed()
        self._refuse_foreign_folder(ignore_hidden=True)
        lock = self._lock()
        try:
            self._check_output_dir()
            return self._run()
        finally:
            lock.release()

    def _run_distributed(self) -> dict[str, Any]:
        """Drafts on every rank, then rank 0's :meth:`_run` (decisions, records, datalist, manifest)."""
        self.device = distributed.local_device(self.device)
        self.network.to(self.device)
        rank_zero = distributed.is_rank_zero()
        lock = None
        try:
            with distributed.fail_together("Preparing the output folder"):
                if rank_zero:
                    self._refuse_foreign_folder(ignore_hidden=True)
                    lock = self._lock()
                    self._check_output_dir()
            with distributed.fail_together("Drawing the shards"):
                self._draft_shards(distributed.rank(), distributed.world_size())
            with distributed.fail_together("Writing the datalist and manifest"):
                summary = self._run() if rank_zero else None
        finally:
            if lock is not None:
                lock.release()
        return distributed.broadcast_object(summary)

    def _draft_shards(self, rank: int, world_size: int) -> None:
        """Draft shards ``rank, rank + world_size, ...`` that have neither a finished record nor a complete draft."""
        self._total = self.num_samples
        self._batch_cache = None
        hasher = (
            DuplicateFilter(image_channels=self.image_channels, **self.dedup_settings) if self.dedup_settings else None
        )
        drawn = []
        for shard in range(rank, -(-self.num_samples // self.shard_size), world_size):
            record = self._load_shard(shard)
            expected = min(self.shard_size, self.num_samples - shard * self.shard_size)
            if (record is None or len(record["pairs"]) != expected) and self._load_draft(shard) is None:
                self._draft_shard(shard, hasher)
                drawn.append(shard)
        logger.info("Rank %d of %d drew shards %s.", rank, world_size, drawn)

    def _run(self) -> dict[str, Any]:
        self._total = self.num_samples
        self._batch_cache = None
        num_shards = -(-self.num_samples // self.shard_size)
        try:
            held = int(read_json(self.output_dir / "manifest.json")["num_samples"])
        except (OSError, ValueError, KeyError, TypeError):
            held = 0
        dedup = (
            DuplicateFilter(image_channels=self.image_channels, **self.dedup_settings) if self.dedup_settings else None
        )
        entries: list[dict] = []
        generated = resumed = 0
        started = time.perf_counter()
        for shard in range(num_shards):
            record = self._load_shard(shard)
            expected = min(self.shard_size, self.num_samples - shard * self.shard_size)
            if record is not None and len(record["pairs"]) == expected:
                resumed += 1
            else:
                if dedup is not None and shard > 0:
                    dedup.load_state_dict(self._load_shard(shard - 1)["dedup_state"])
                record = self._generate_shard(shard, dedup)
                generated += 1
            if dedup is not None and record["dedup_state"] is not None:
                dedup.load_state_dict(record["dedup_state"])
            entries += record["pairs"]
        seconds = time.perf_counter() - started
        entries, selection = self._select(entries)
        kept = [e for e in entries if e["kept"]]
        label_names = self._label_names()
        summary = {
            "num_generated": len(entries),
            "num_kept": len(kept),
            "duplicate_rate": duplicate_rate([e.get("duplicate_of") is not None for e in entries])
            if self.dedup_settings
            else None,
            "mean_postprocess_change": float(np.mean([e["postprocess_change"] for e in entries])),
            "shards_generated": generated,
            "shards_resumed": resumed,
            "seconds": round(seconds, 3),
            "pairs_per_second": round(len(entries) / seconds, 3) if generated == num_shards and seconds > 0 else None,
            "device": str(self.device),
            "host": platform.node(),
            **selection,
        }
        stale_records, stale_files, stale_indices = self._stale(num_shards)
        held = max([held, *(i + 1 for i in stale_indices)])
        if stale_records or stale_files:
            summary["stale_pairs_removed"] = held - self.num_samples
        write_json_atomic(
            self.output_dir / "manifest.json",
            {
                "fingerprint": self.fingerprint,
                "num_samples": self.num_samples,
                "latent": {
                    "kind": "z",
                    "dim": self.latent_dim,
                    "distribution": self.latent_distribution,
                    "from": "seed: monai_synth.networks.latents.latents_from_seeds([seed], dim, distribution=...)",
                },
                "summary": summary,
                "pairs": entries,
            },
        )
        write_json_atomic(
            self.output_dir / "datalist.json",
            {
                "name": "monai_synth generated pairs",
                "description": f"{len(kept)} pairs from {self.generator_path.name} (seed {self.seed})",
                "labels": label_names,
                "modality": {str(c): "synthetic" for c in range(self.image_channels)},
                "numTraining": len(kept),
                "training": [
                    {
                        **({"image": e["image"]} if e.get("image") else {}),
                        "label": e["label"],
                        "case_id": e["id"],
                        "seed": e["seed"],
                    }
                    for e in kept
                ],
            },
        )
        # datalist and manifest first: a kill from here on leaves a consistent set, and a rerun finishes this
        for path in stale_records + stale_files:
            path.unlink(missing_ok=True)
        if stale_records or stale_files:
            logger.warning(
                "%s: this run asks for %d pairs but the folder held %d; removed the %d pairs beyond the new count "
                "(%d files from pairs/, %d shard records from shards/) so pairs/ and shards/ match datalist.json "
                "and manifest.json.",
                self.output_dir,
                self.num_samples,
                held,
                held - self.num_samples,
                len(stale_files),
                len(stale_records),
            )
        logger.info(
            "Generated %d pairs (%d kept, duplicate rate %s) in %s.",
            len(entries),
            len(kept),
            summary["duplicate_rate"],
            self.output_dir,
        )
        return summary

    def __call__(self) -> dict[str, Any]:
        return self.run()
