"""Built-in phantom dataset: procedural 2D axial thorax CT slices with organ labels.

Every bundle falls back on these slices when no dataset is given, so that a new user sees the whole
pipeline (training, generation, evaluation) work in minutes on a laptop CPU.

Each slice is a non-contrast axial chest CT in Hounsfield units (HU), shown in radiological
convention: the patient's left is on the image right (larger column index) and anterior is up
(smaller row index). Anatomy (values before partial-volume blur and noise):

- air outside the body: -1000 HU, label 0 (background);
- subcutaneous and mediastinal fat (-100 / -90 HU), chest-wall and pectoral muscle (~45 HU), ribs,
  sternum, scapulae and vertebra (cortical +650..+850, cancellous ~+280 HU): label 0 (the body
  outline is not labelled);
- lungs, about -860 HU anteriorly to -800 HU posteriorly (gravity-dependent density) with branching
  vessels and vessel cross-sections up to ~+40 HU: label 1 ``left_lung`` (on the image right) and
  label 2 ``right_lung`` (on the image left);
- heart ~40 HU (label 3), surrounded by pericardial fat;
- descending aorta ~45 HU (label 4), left-anterolateral to the vertebral body;
- trachea, an air lumen (-1000 HU) with a soft-tissue wall (label 5 is the lumen), centred between
  the lungs, anterior to the esophagus and spine.

The aorta holds unenhanced blood (~45 HU) because the phantom models a non-contrast scan: an
enhanced aorta (~+200 HU) would also require enhanced heart chambers to stay consistent. It is
told apart from the heart and spine by the fat plane around it, as in a real non-contrast CT.

The slice is a composite of the mid-thorax (heart, descending aorta) and the upper thorax (trachea)
so that every label is present in every sample. Shapes are defined in continuous coordinates
normalised to the body width and rasterised at any size, so the same seed gives the same anatomy at
every ``image_size`` (only radii below ~1.3 pixels are enlarged so that every organ keeps a few
pixels at 32 x 32). The image is rendered with supersampling and a point-spread blur (partial
volume), then receives spatially correlated noise, as CT images do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import Dataset
from scipy import ndimage

from monai_synth.utils.io import read_json, save_nifti_atomic, save_png_atomic, write_json_atomic
from monai_synth.utils.visualize import pair_grid

__all__ = [
    "PHANTOM_LABELS",
    "PHANTOM_BINARY_LABELS",
    "PHANTOM_FOV_MM",
    "generate_phantom",
    "phantom_affine",
    "PhantomDataset",
    "write_phantom_dataset",
    "phantom_preview",
]

PHANTOM_LABELS: dict[str, int] = {
    "background": 0,
    "left_lung": 1,
    "right_lung": 2,
    "heart": 3,
    "aorta": 4,
    "trachea": 5,
}
PHANTOM_BINARY_LABELS: dict[str, int] = {"background": 0, "lung": 1}

#: Square field of view of a phantom slice in millimetres (pixel spacing = ``PHANTOM_FOV_MM / image_size``).
PHANTOM_FOV_MM = 400.0

_MIN_SIZE, _MAX_SIZE = 32, 512
_LUNG_WINDOW = (-600.0, 1500.0)  # (level, width) in HU
_MIN_RADIUS_PX = 1.3  # small round organs never get thinner than this, so they survive 32 x 32
_GENERATOR_VERSION = 2  # bump when the rendering changes, so stale written datasets are detected


# ---------------------------------------------------------------------------------------------------
# geometry helpers (all in the body frame: units of the body half-width, v pointing posterior)
# ---------------------------------------------------------------------------------------------------
def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum (union of signed distances) with a rounded fillet of size ``k``."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (intersection of signed distances)."""
    return -_smin(-a, -b, k)


def _superellipse(
    u: np.ndarray,
    v: np.ndarray,
    centre: tuple[float, float],
    radii: tuple[float, float] | tuple[float, float, float],
    angle: float = 0.0,
    power: float | tuple[float, float] = 2.0,
) -> np.ndarray:
    """Approximate signed distance to a (super)ellipse: ``(L - 1) / |grad L|`` of its level function.

    ``radii`` is ``(a, b)`` or ``(a, b_anterior, b_posterior)`` and ``power`` a number or
    ``(p_anterior, p_posterior)``, so that the torso can be rounder in front than at the back.
    """
    c, s = math.cos(angle), math.sin(angle)
    x = (u - centre[0]) * c + (v - centre[1]) * s
    y = -(u - centre[0]) * s + (v - centre[1]) * c
    a = radii[0]
    b = radii[1] if len(radii) == 2 else np.where(y < 0, radii[1], radii[2])
    p = power if np.isscalar(power) else np.where(y < 0, power[0], power[1])
    ax, ay = np.abs(x) / a + 1e-9, np.abs(y) / b + 1e-9
    if np.isscalar(p) and p == 2.0:  # ellipse: avoid the (slow) general powers
        level = np.sqrt(ax * ax + ay * ay)
        gx, gy = ax / (a * level), ay / (b * level)
        return (level - 1.0) / np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)
    level = (ax**p + ay**p) ** (1.0 / p)
    # the level function is 1-homogeneous, so its gradient never vanishes away from the centre
    scale = level ** (1.0 - p)
    gx, gy = scale * ax ** (p - 1.0) / a, scale * ay ** (p - 1.0) / b
    return (level - 1.0) / np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)


def _circle(u: np.ndarray, v: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    return np.hypot(u - centre[0], v - centre[1]) - radius


def _box(u: np.ndarray, v: np.ndarray, centre: tuple[float, float], half: tuple[float, float]) -> np.ndarray:
    dx, dy = np.abs(u - centre[0]) - half[0], np.abs(v - centre[1]) - half[1]
    return np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0)) + np.minimum(np.maximum(dx, dy), 0.0)


# ---------------------------------------------------------------------------------------------------
# anatomy: every random draw happens here, independent of the image size
# ---------------------------------------------------------------------------------------------------
def _vessel_tree(
    rng: np.random.Generator, root: tuple[float, float], direction: float, spread: float
) -> list[tuple[float, float, float, float, float]]:
    """Branching vessel tree from a hilum: a list of segments ``(u0, v0, u1, v1, radius)``.

    Only some branches are kept in the slice (the others leave the plane), which gives the short
    line segments of a real lung window rather than a complete tree.
    """
    segments = []
    stack = []
    for k in range(5):  # primary branches fan out from the hilum
        angle = direction + spread * (k / 4.0 - 0.5) + rng.uniform(-0.15, 0.15)
        stack.append((root, angle, rng.uniform(0.12, 0.2), rng.uniform(0.008, 0.012), 0))
    while stack:
        (u0, v0), angle, length, radius, depth = stack.pop()
        u1, v1 = u0 + length * math.cos(angle), v0 + length * math.sin(angle)
        if rng.random() < (0.9 if depth == 0 else 0.55):
            segments.append((u0, v0, u1, v1, radius))
        if depth < 3:
            for sign in (-1.0, 1.0):
                child = angle + sign * rng.uniform(0.3, 0.7)
                stack.append(((u1, v1), child, length * rng.uniform(0.6, 0.85), radius * 0.7, depth + 1))
    return segments


def _sample_anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Draw every anatomical parameter of one phantom (body frame units, radians)."""
    a: dict[str, Any] = {}
    # pose of the body in normalised image coordinates [-1, 1]
    a["rotation"] = math.radians(rng.uniform(-8.0, 8.0))
    a["centre"] = (rng.uniform(-0.04, 0.04), rng.uniform(-0.02, 0.06))
    a["half_width"] = rng.uniform(0.8, 0.9)
    # torso: superellipse, rounder in front, flatter at the back
    e = rng.uniform(0.64, 0.76)
    a["body_radii"] = (1.0, e * rng.uniform(0.94, 1.0), e)
    a["body_power"] = (rng.uniform(2.0, 2.4), rng.uniform(2.6, 3.2))
    fat = rng.uniform(0.04, 0.085)
    muscle = rng.uniform(0.06, 0.08)
    a["fat"], a["muscle"] = fat, muscle
    _, b_ant, b_post = a["body_radii"]
    a["cavity_radii"] = (1.0 - fat - muscle, b_ant - fat - muscle, b_post - fat - muscle - rng.uniform(0.02, 0.05))
    # spine: vertebral body, canal, posterior elements
    rv = rng.uniform(0.1, 0.12)
    vv = b_post - rng.uniform(0.36, 0.41) * e / 0.7
    a["vertebra"] = ((rng.uniform(-0.01, 0.01), vv), rv)
    # mediastinum, posterior to anterior: esophagus, trachea; descending aorta left-anterolateral to spine
    a["esophagus_r"] = rng.uniform(0.03, 0.04)
    a["esophagus_dx"] = rng.uniform(0.0, 0.04)
    a["trachea_r"] = rng.uniform(0.05, 0.06)
    a["trachea_x"] = rng.uniform(-0.05, -0.01)
    a["trachea_aspect"] = rng.uniform(0.85, 1.0)
    a["aorta_r"] = rng.uniform(0.06, 0.08)
    a["aorta_angle"] = math.radians(rng.uniform(-45.0, -25.0))
    # heart: long axis pointing anterior-left (image up-right)
    a["heart_x"] = rng.uniform(0.12, 0.2)
    a["heart_radii"] = (rng.uniform(0.34, 0.4), rng.uniform(0.25, 0.3))
    a["heart_angle"] = math.radians(rng.uniform(-40.0, -20.0))
    a["heart_shift"] = rng.uniform(0.0, 0.04)  # how far the heart is pushed back against the chest wall
    a["pericardial_fat"] = rng.uniform(0.02, 0.04)
    a["midline_half_width"] = rng.uniform(0.025, 0.045)
    a["pleura"] = rng.uniform(0.008, 0.015)
    # ribs along the cavity wall (per side: angles around the cavity, tangential length)
    a["ribs"] = []
    for side in (-1.0, 1.0):
        n = int(rng.integers(5, 8))
        angles = np.linspace(rng.uniform(1.9, 2.05), rng.uniform(4.0, 4.25), n) + rng.uniform(-0.06, 0.06, n)
        for t, half_len in zip(angles, rng.uniform(0.028, 0.05, n)):
            a["ribs"].append((side, float(t), float(half_len), float(rng.uniform(0.014, 0.018))))
    a["pectoral"] = (rng.uniform(4.15, 4.35), rng.uniform(0.2, 0.28), rng.uniform(0.035, 0.055))
    a["scapula_angle"] = rng.uniform(2.15, 2.35)
    a["scapula_len"] = rng.uniform(0.1, 0.15)
    a["esophagus_air"] = bool(rng.random() < 0.5)
    # lungs: density, antero-posterior (dependent) gradient, vessels
    a["lung_hu"] = rng.uniform(-880.0, -845.0)
    a["lung_gradient"] = rng.uniform(30.0, 70.0)
    a["vessels"] = []
    for side in (-1.0, 1.0):
        # hilum on the medial side of each lung, at the level of the trachea
        root = (side * rng.uniform(0.2, 0.26) + (0.06 if side > 0 else 0.0), rng.uniform(-0.12, -0.02))
        direction = math.pi if side < 0 else 0.0
        a["vessels"] += _vessel_tree(rng, root, direction, spread=rng.uniform(2.6, 3.0))
    # vessels crossing the slice: dots, larger near the hila (only those inside a lung are drawn)
    n_dots = 300
    du, dv = rng.uniform(-1.0, 1.0, n_dots), rng.uniform(-0.75, 0.75, n_dots)
    central = np.clip(1.0 - np.hypot(np.abs(du) - 0.2, dv + 0.05) / 0.8, 0.0, 1.0)
    a["vessel_dots"] = np.stack([du, dv, rng.uniform(0.003, 0.006, n_dots) + 0.009 * central**1.5], axis=1)
    # smooth low-frequency texture (8 x 8 control grid, interpolated at any resolution)
    a["texture"] = rng.normal(size=(2, 8, 8))
    a["hu_jitter"] = rng.normal(size=6)
    a["noise_sigma"] = rng.uniform(12.0, 22.0)
    return a


def _layout(a: dict[str, Any], px: float) -> dict[str, Any]:
    """Derive dependent positions; radii below ``_MIN_RADIUS_PX`` pixels (``px`` body units) grow."""
    floor = _MIN_RADIUS_PX * px
    (xv, vv), rv = a["vertebra"]
    re = max(a["esophagus_r"], 0.6 * floor)
    rt = max(a["trachea_r"], floor)
    ra = max(a["aorta_r"], floor)
    eso = (xv + a["esophagus_dx"], vv - rv - re - 0.005)
    trachea = (a["trachea_x"], eso[1] - re - rt - 0.015)
    d = rv + ra + 0.02
    aorta = (xv + d * math.cos(a["aorta_angle"]), vv + d * math.sin(a["aorta_angle"]))
    # keep the aorta clear of the trachea (it can only get close at small sizes)
    gap = math.hypot(aorta[0] - trachea[0], aorta[1] - trachea[1]) - (rt + ra + 0.03)
    if gap < 0:
        aorta = (aorta[0] - gap, aorta[1])
    # heart: as far posterior as the trachea, esophagus and aorta allow (with pericardial fat), its
    # front against the anterior chest wall; shrink it when the chest is too shallow
    ha, hb = a["heart_radii"]
    th, hx = a["heart_angle"], a["heart_x"]
    clearance = a["pericardial_fat"] + 0.015
    obstacles = [(trachea, rt + clearance), (eso, re + clearance), (aorta, ra + clearance), ((xv, vv), rv + clearance)]
    front = -a["cavity_radii"][1]

    def clear(centre: tuple[float, float], radii: tuple[float, float]) -> bool:
        return all(_superellipse(np.array(c[0]), np.array(c[1]), centre, radii, th) > r for c, r in obstacles)

    # try, in order: the sampled heart; pushed a little into the anterior wall (it gets flattened
    # there, as hearts do) or further toward the patient's left; only then a smaller heart
    for scale in 0.97 ** np.arange(60):
        radii = (ha * scale, hb * scale)
        ext_y = math.hypot(radii[0] * math.sin(th), radii[1] * math.cos(th))
        candidates = [
            (hx + dx, front + ext_y - a["heart_shift"] - up) for up in (0.0, 0.025, 0.05) for dx in (0.0, 0.03, 0.06)
        ]
        centre = next((c for c in candidates if clear(c, radii)), None)
        if centre is not None:
            break
    else:  # unreachable with the sampled ranges; keep the smallest heart rather than fail
        centre = candidates[0]
    hx, hv = centre
    ha, hb = radii
    return {
        "vertebra": ((xv, vv), rv),
        "esophagus": (eso, re),
        "trachea": (trachea, rt),
        "aorta": (aorta, ra),
        "heart": ((hx, hv), (ha, hb)),
    }


def _body_grid(a: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Body-frame coordinates ``(u, v)`` of the centres of an ``n x n`` pixel grid and the pixel size."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    x, y = x - a["centre"][0], y - a["centre"][1]
    c, s = math.cos(a["rotation"]), math.sin(a["rotation"])
    u = (c * x + s * y) / a["half_width"]
    v = (-s * x + c * y) / a["half_width"]
    return u, v, 2.0 / n / a["half_width"]


def _to_pixel(a: dict[str, Any], n: int, u: float, v: float) -> tuple[float, float]:
    """Body-frame point -> (row, column) in an ``n x n`` grid (inverse of :func:`_body_grid`)."""
    c, s = math.cos(a["rotation"]), math.sin(a["rotation"])
    x = (c * u - s * v) * a["half_width"] + a["centre"][0]
    y = (s * u + c * v) * a["half_width"] + a["centre"][1]
    return (y + 1.0) / 2.0 * n - 0.5, (x + 1.0) / 2.0 * n - 0.5


def _geometry(a: dict[str, Any], lay: dict[str, Any], u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Signed distances of every structure on the grid ``(u, v)``."""
    g: dict[str, np.ndarray] = {}
    g["body"] = _superellipse(u, v, (0.0, 0.0), a["body_radii"], power=a["body_power"])
    r0, r1, r2 = a["body_radii"]
    fat = a["fat"]
    g["muscle"] = _superellipse(u, v, (0.0, 0.0), (r0 - fat, r1 - fat, r2 - fat), power=a["body_power"])
    (xv, vv), rv = lay["vertebra"]
    g["vertebra"] = _circle(u, v, (xv, vv), rv)
    # the spine and paraspinal muscles indent the back of the thoracic cavity
    spine_block = _smin(g["vertebra"] - 0.025, _superellipse(u, v, (xv, vv + 0.22), (0.24, 0.2)), 0.05)
    cavity = _superellipse(u, v, (0.0, 0.0), a["cavity_radii"], power=a["body_power"])
    g["cavity"] = _smax(cavity, -spine_block, 0.05)
    (hx, hv), hr = lay["heart"]
    g["heart"] = np.maximum(_superellipse(u, v, (hx, hv), hr, angle=a["heart_angle"]), g["cavity"] + 0.01)
    (ta, tv), rt = lay["trachea"]
    g["trachea"] = _superellipse(u, v, (ta, tv), (rt, rt * a["trachea_aspect"]))
    g["esophagus"] = _circle(u, v, *lay["esophagus"])
    g["aorta"] = _circle(u, v, *lay["aorta"])
    # mediastinum: organs with their fat, joined to the sternum and spine by a midline band
    band = _box(u, v, (ta, (vv - r1) / 2.0), (a["midline_half_width"], (vv + r1) / 2.0))
    mediastinum = _smin(g["heart"] - a["pericardial_fat"], band, 0.08)
    for name, margin in (("trachea", 0.035), ("esophagus", 0.03), ("aorta", 0.015), ("vertebra", 0.02)):
        mediastinum = _smin(mediastinum, g[name] - margin, 0.06)
    g["lungs"] = _smax(g["cavity"] + a["pleura"], -mediastinum, 0.03)
    g["midline"] = u - ta
    return g


def _labels(g: dict[str, np.ndarray]) -> np.ndarray:
    """Label map from signed distances; later organs take precedence, so labels never overlap."""
    label = np.zeros(g["body"].shape, dtype=np.uint8)
    lungs = g["lungs"] < 0
    label[lungs & (g["midline"] < 0)] = PHANTOM_LABELS["right_lung"]
    label[lungs & (g["midline"] >= 0)] = PHANTOM_LABELS["left_lung"]
    label[g["heart"] < 0] = PHANTOM_LABELS["heart"]
    label[g["aorta"] < 0] = PHANTOM_LABELS["aorta"]
    label[g["trachea"] < 0] = PHANTOM_LABELS["trachea"]
    label[g["body"] >= 0] = 0
    return label


def _vessel_occupancy(a: dict[str, Any], u: np.ndarray, v: np.ndarray, px: float) -> np.ndarray:
    """Fraction of each pixel covered by a lung vessel (box-filtered line coverage), in [0, 1]."""
    n = u.shape[0]
    occ = np.zeros((n, n), dtype=np.float64)
    segments = list(a["vessels"]) + [(x, y, x, y, r) for x, y, r in a["vessel_dots"]]
    scale = a["half_width"] * n / 2.0  # body units -> pixels
    for u0, v0, u1, v1, r in segments:
        # only touch the bounding box of the segment: trees have hundreds of segments
        (i0, j0), (i1, j1) = _to_pixel(a, n, u0, v0), _to_pixel(a, n, u1, v1)
        pad = (r + px) * scale + 2.0
        rs = slice(max(int(min(i0, i1) - pad), 0), min(int(max(i0, i1) + pad) + 1, n))
        cs = slice(max(int(min(j0, j1) - pad), 0), min(int(max(j0, j1) + pad) + 1, n))
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        uu, vv = u[rs, cs], v[rs, cs]
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((uu - u0) * du + (vv - v0) * dv) / max(du * du + dv * dv, 1e-12), 0.0, 1.0)
        dist = np.hypot(uu - u0 - t * du, vv - v0 - t * dv)
        cover = np.clip(np.minimum(r + px / 2.0 - dist, 2.0 * r) / px, 0.0, 1.0)
        np.maximum(occ[rs, cs], cover, out=occ[rs, cs])
    return occ


def _texture(field: np.ndarray, n: int) -> np.ndarray:
    """Smooth unit-variance field from an 8 x 8 control grid, sampled at ``n x n`` pixel centres."""
    t = (np.arange(n) + 0.5) / n * (field.shape[0] - 1)
    rows, cols = np.meshgrid(t, t, indexing="ij")
    return ndimage.map_coordinates(field, [rows, cols], order=3, mode="nearest")


def _wall_point(a: dict[str, Any], t: float, offset: float, side: float) -> tuple[float, float, float]:
    """Point ``offset`` outside the cavity wall and the wall's tangent angle there.

    ``t`` is the parametric angle on the image-left half (``t = pi`` lateral, ``t < pi`` posterior);
    ``side = +1`` mirrors the point to the image right.
    """
    ra, rb_ant, rb_post = a["cavity_radii"]
    c, s = math.cos(t), math.sin(t)
    rb, q = (rb_ant, a["body_power"][0]) if s < 0 else (rb_post, a["body_power"][1])
    x = math.copysign(abs(c) ** (2.0 / q), c) * (ra + offset)
    y = math.copysign(abs(s) ** (2.0 / q), s) * (rb + offset)
    tangent = math.atan2((rb + offset) * c, -(ra + offset) * s)  # elliptic approximation
    return (-x, y, math.pi - tangent) if side > 0 else (x, y, tangent)


def _skeleton(
    a: dict[str, Any], lay: dict[str, Any], u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed distances of all bone, of its cancellous (marrow) part, and of the spinal canal."""
    flat = np.full(u.shape, np.inf)  # ribs and scapulae
    for side, t, half_len, half_w in a["ribs"]:
        x, y, tangent = _wall_point(a, t, half_w + 0.012, side)
        flat = np.minimum(flat, _superellipse(u, v, (x, y), (half_len, half_w), angle=tangent))
    for side in (-1.0, 1.0):
        x, y, tangent = _wall_point(a, a["scapula_angle"], 0.05, side)
        flat = np.minimum(flat, _superellipse(u, v, (x, y), (a["scapula_len"], 0.014), angle=tangent))
    sternum_centre = (0.0, -a["cavity_radii"][1] - a["muscle"] * 0.45)
    sternum = _superellipse(u, v, sternum_centre, (0.07, min(0.028, a["muscle"] * 0.4)))
    (xv, vv), rv = lay["vertebra"]
    vertebra = _circle(u, v, (xv, vv), rv)
    canal_centre = (xv, vv + rv + 0.045)
    arch = np.abs(_circle(u, v, canal_centre, 0.058)) - 0.017
    spinous = _superellipse(u, v, (xv, canal_centre[1] + 0.1), (0.022, 0.075))
    transverse = np.minimum(
        _superellipse(u, v, (xv - 0.1, canal_centre[1] - 0.005), (0.07, 0.022), angle=-0.35),
        _superellipse(u, v, (xv + 0.1, canal_centre[1] - 0.005), (0.07, 0.022), angle=0.35),
    )
    thin = np.minimum(flat, np.minimum(np.minimum(arch, spinous), transverse))
    bone = np.minimum(np.minimum(thin, sternum), vertebra)
    # cortical shell thickness: vertebral body 0.014, sternum 0.008, thin bones 0.01 (body units)
    marrow = np.minimum(np.minimum(vertebra + 0.014, sternum + 0.008), thin + 0.01)
    return bone, marrow, _circle(u, v, canal_centre, 0.042)


def _intensity(
    a: dict[str, Any], lay: dict[str, Any], g: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray, px: float
) -> np.ndarray:
    """Noise-free HU map on the grid ``(u, v)`` (before supersampling reduction and blur)."""
    n = u.shape[0]
    j = a["hu_jitter"]
    tex_soft, tex_lung = _texture(a["texture"][0], n), _texture(a["texture"][1], n)
    hu = np.full((n, n), -1000.0)
    body, inner, cavity = g["body"] < 0, g["muscle"] < 0, g["cavity"] < 0
    muscle_hu = 45.0 + 4 * j[1] + 6.0 * tex_soft
    hu[body] = -100.0 + 5 * j[0] + 10.0 * tex_soft[body]
    hu[inner] = muscle_hu[inner]
    # pectoral muscles thicken the anterior chest wall into the subcutaneous fat
    for side in (-1.0, 1.0):
        x, y, tangent = _wall_point(a, a["pectoral"][0], a["muscle"] * 0.7 + a["pectoral"][2] * 0.5, side)
        pectoral = (_superellipse(u, v, (x, y), a["pectoral"][1:], angle=tangent) < 0) & (g["body"] < -0.012)
        hu[pectoral] = muscle_hu[pectoral]
    hu[cavity] = -90.0 + 5 * j[2] + 10.0 * tex_soft[cavity]
    bone, marrow, canal = _skeleton(a, lay, u, v)
    cortical = (bone < 0) & inner
    hu[cortical] = 650.0 + 40 * j[3]
    hu[(g["vertebra"] < 0) & cortical] = 850.0 + 40 * j[3]
    cancellous = cortical & (marrow < 0)
    hu[cancellous] = 280.0 + 30 * j[3] + 40.0 * tex_soft[cancellous]
    hu[canal < 0] = 20.0
    # unlabelled mediastinal soft tissue
    hu[g["esophagus"] < 0] = 40.0
    if a["esophagus_air"]:
        centre, radius = lay["esophagus"]
        hu[_circle(u, v, centre, 0.3 * radius) < 0] = -900.0
    hu[g["trachea"] < 0.012] = 50.0  # tracheal wall
    # labelled organs, painted with the same rule as the label map
    label = _labels(g)
    lung = (label == PHANTOM_LABELS["left_lung"]) | (label == PHANTOM_LABELS["right_lung"])
    v_front, v_back = -a["cavity_radii"][1], a["cavity_radii"][2]
    dependent = np.clip((v - v_front) / (v_back - v_front), 0.0, 1.0) ** 1.5  # gravity: denser at the back
    lung_hu = a["lung_hu"] + a["lung_gradient"] * dependent + 20.0 * tex_lung
    vessels = _vessel_occupancy(a, u, v, px)
    hu[lung] = (lung_hu + vessels * (40.0 - lung_hu))[lung]
    heart = label == PHANTOM_LABELS["heart"]
    hu[heart] = 40.0 + 3 * j[4] + 4.0 * tex_soft[heart]
    hu[label == PHANTOM_LABELS["aorta"]] = 45.0 + 3 * j[5]
    hu[label == PHANTOM_LABELS["trachea"]] = -1000.0
    return hu


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer in [{_MIN_SIZE}, {_MAX_SIZE}], got {image_size!r}.")
    if not _MIN_SIZE <= image_size <= _MAX_SIZE:
        raise ValueError(
            f"image_size={image_size} is outside [{_MIN_SIZE}, {_MAX_SIZE}]; phantoms are rendered at "
            f"{_MIN_SIZE}..{_MAX_SIZE} pixels (resize afterwards for other sizes)."
        )
    return int(image_size)


def _check_seed(seed: int, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}.")
    return int(seed)


def generate_phantom(seed: int, image_size: int = 128, binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render one phantom axial thorax CT slice and its organ labels.

    The anatomy depends only on ``seed`` (the same seed gives the same patient at every size); the
    noise depends on ``seed`` and ``image_size``. No global random state is used.

    Args:
        seed: non-negative integer seed.
        image_size: height and width in pixels, in [32, 512]. Pixel spacing is
            ``PHANTOM_FOV_MM / image_size`` mm.
        binary: if True, the label is 1 for both lungs and 0 elsewhere (:data:`PHANTOM_BINARY_LABELS`);
            otherwise the multi-organ labels of :data:`PHANTOM_LABELS`.

    Returns:
        ``(image, label)``: ``image`` ``(1, H, W)`` float32 in Hounsfield units (about -1024..+1000)
        and ``label`` ``(1, H, W)`` uint8 with values in ``0..5`` (or ``0..1`` when ``binary``).

    Raises:
        ValueError: if ``image_size`` is outside [32, 512] or ``seed`` is not a non-negative integer.

    Example::

        image, label = generate_phantom(seed=3, image_size=64)
        assert image.shape == label.shape == (1, 64, 64)
    """
    n = _check_size(image_size)
    seed = _check_seed(seed)
    anatomy_rng, noise_rng = np.random.default_rng(seed).spawn(2)
    a = _sample_anatomy(anatomy_rng)

    # labels at pixel centres
    u, v, px = _body_grid(a, n)
    lay = _layout(a, px)
    label = _labels(_geometry(a, lay, u, v))

    # image: supersample small sizes (partial volume), then blur with a ~0.8 mm point-spread function
    factor = 4 if n <= 64 else 2 if n <= 160 else 1
    m = n * factor
    us, vs, pxs = (u, v, px) if factor == 1 else _body_grid(a, m)
    hu = _intensity(a, lay, _geometry(a, lay, us, vs), us, vs, pxs)
    if factor > 1:
        hu = hu.reshape(n, factor, n, factor).mean(axis=(1, 3))
    psf_px = 0.8 / (PHANTOM_FOV_MM / n)
    if psf_px > 0.3:
        hu = ndimage.gaussian_filter(hu, psf_px)
    # CT noise is spatially correlated: blurred white noise rescaled to the wanted standard deviation
    noise = ndimage.gaussian_filter(noise_rng.standard_normal((n, n)), 0.7)
    hu = hu + noise * (a["noise_sigma"] / noise.std())
    image = np.clip(hu, -1024.0, 3071.0).astype(np.float32)[None]
    if binary:
        label = np.isin(label, (PHANTOM_LABELS["left_lung"], PHANTOM_LABELS["right_lung"])).astype(np.uint8)
    return image, label[None]


def phantom_affine(image_size: int) -> np.ndarray:
    """NIfTI affine (RAS+ world, mm) of a phantom slice stored as an ``(H, W)`` array.

    Rows run anterior -> posterior and columns patient right -> left (radiological display), so the
    voxel axes are ``("P", "L", "S")`` and viewers such as 3D Slicer or ITK-SNAP show the slice the way
    the array looks. MONAI ``LoadImage`` returns the array unchanged (no reorientation by default).

    Args:
        image_size: slice size in pixels, in [32, 512].

    Returns:
        ``(4, 4)`` float64 affine with spacing ``PHANTOM_FOV_MM / image_size`` mm, centred on the origin.
    """
    n = _check_size(image_size)
    s = PHANTOM_FOV_MM / n
    half = (n - 1) / 2.0 * s
    return np.array(
        [[0.0, -s, 0.0, half], [-s, 0.0, 0.0, half], [0.0, 0.0, s, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float64
    )


class PhantomDataset(Dataset):
    """MONAI :class:`~monai.data.Dataset` of phantom slices, generated on the fly.

    Item ``i`` is rendered from seed ``seed + i`` as the dictionary
    ``{"image": (1, H, W) float32 HU, "label": (1, H, W) uint8, "seed": int, "case_id": "phantom_XXXXX"}``
    and passed through ``transform``. ``self.data`` holds the per-item seeds, so ``len``, indexing,
    slicing (a ``Subset``) and ``monai.data.DataLoader`` behave as usual. Items are rendered on every
    access (on one CPU core about 0.05 s at 32 x 32, 0.15 s at 128 x 128, 0.8 s at 512 x 512); to
    cache them, write them once with :func:`write_phantom_dataset` and load its datalist with any
    MONAI dataset (``CacheDataset``, ``PersistentDataset``, ...).

    Args:
        num_samples: number of slices, at least 1.
        image_size: slice size in pixels, in [32, 512].
        seed: seed of the first item (non-negative).
        binary: lung-vs-background labels (:data:`PHANTOM_BINARY_LABELS`) instead of organ labels.
        transform: MONAI (dictionary) transform(s) applied to each item, or None.

    Raises:
        ValueError: for ``num_samples < 1``, an ``image_size`` outside [32, 512] or a negative ``seed``.

    Example::

        ds = PhantomDataset(16, image_size=64, transform=ScaleIntensityRanged("image", -1000, 400, -1, 1))
        loader = monai.data.DataLoader(ds, batch_size=4)
    """

    def __init__(
        self,
        num_samples: int,
        image_size: int = 128,
        seed: int = 0,
        binary: bool = False,
        transform: Sequence[Callable] | Callable | None = None,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
        self.image_size = _check_size(image_size)
        self.seed = _check_seed(seed)
        self.binary = bool(binary)
        super().__init__(data=[self.seed + i for i in range(int(num_samples))], transform=transform)

    @property
    def labels(self) -> dict[str, int]:
        """Label names -> values of the items' ``label``."""
        return dict(PHANTOM_BINARY_LABELS if self.binary else PHANTOM_LABELS)

    def _transform(self, index: int):
        item_seed = self.data[index]
        image, label = generate_phantom(item_seed, self.image_size, self.binary)
        item = {"image": image, "label": label, "seed": item_seed, "case_id": _case_id(item_seed)}
        return self.transform(item)


def _case_id(seed: int) -> str:
    return f"phantom_{seed:05d}"


def _window_uint8(image: np.ndarray, level: float, width: float) -> np.ndarray:
    low = level - width / 2.0
    return np.round(np.clip((image - low) / width, 0.0, 1.0) * 255.0).astype(np.uint8)


_FORMATS = ("nifti", "png")


def write_phantom_dataset(
    output_dir: str | os.PathLike,
    num_samples: int,
    image_size: int = 128,
    seed: int = 0,
    binary: bool = False,
    formats: Sequence[str] = ("nifti",),
) -> Path:
    """Write phantom slices to disk with a MONAI decathlon-style datalist.

    Layout: ``images/phantom_XXXXX.nii.gz`` (float32 HU) and ``labels/phantom_XXXXX.nii.gz`` (uint8),
    and/or ``.png`` (image in the lung window, level -600 / width 1500 HU, mapped to 0..255; label
    as its integer values), plus ``datalist.json``::

        {"training": [{"image": "images/phantom_00000.nii.gz", "label": "labels/...", "case_id": ...,
                       "seed": 0}, ...],
         "labels": {"0": "background", ...}, "name": ..., "modality": {"0": "CT"},
         "phantom": {generation arguments}}

    Paths are relative to the datalist's folder, so ``monai.data.load_decathlon_datalist`` reads it.
    The datalist points at the NIfTI files when ``"nifti"`` is among ``formats``, else at the PNGs.
    Every file is written atomically and the datalist last. Calling again with the same arguments
    leaves the files untouched (missing files are re-created); a folder holding any other datalist is
    refused.

    Args:
        output_dir: destination folder (created if needed).
        num_samples: number of slices, at least 1.
        image_size: slice size in pixels, in [32, 512].
        seed: seed of the first slice; slice ``i`` uses ``seed + i``.
        binary: lung-vs-background labels instead of organ labels.
        formats: any non-empty combination of ``"nifti"`` and ``"png"``.

    Returns:
        Path of the written ``datalist.json``.

    Raises:
        ValueError: for invalid arguments, or if ``output_dir`` already holds a datalist made with
            different arguments (or not by this function).
    """
    output_dir = Path(output_dir)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
    image_size, seed = _check_size(image_size), _check_seed(seed)
    if isinstance(formats, str):
        formats = (formats,)
    unknown = sorted(set(formats) - set(_FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {list(_FORMATS)}, got {list(formats)}.")
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output_dir {output_dir} exists and is not a folder.")
    record = {
        "num_samples": int(num_samples),
        "image_size": image_size,
        "seed": seed,
        "binary": bool(binary),
        "formats": [f for f in _FORMATS if f in formats],
        "generator_version": _GENERATOR_VERSION,
    }
    datalist_path = output_dir / "datalist.json"
    previous = read_json(datalist_path) if datalist_path.exists() else None
    if previous is not None:
        if not isinstance(previous, dict) or "phantom" not in previous:
            raise ValueError(
                f"{output_dir} already holds a datalist.json that was not written by write_phantom_dataset; "
                "choose an empty or new output folder."
            )
        if previous["phantom"] != record:
            raise ValueError(
                f"{output_dir} already holds a phantom dataset made with different arguments "
                f"({previous['phantom']}, requested {record}); choose another output folder or delete it."
            )

    labels = PHANTOM_BINARY_LABELS if binary else PHANTOM_LABELS
    affine = phantom_affine(image_size)
    entries = []
    for item_seed in range(seed, seed + int(num_samples)):
        case_id = _case_id(item_seed)
        paths = {
            fmt: (f"images/{case_id}{ext}", f"labels/{case_id}{ext}")
            for fmt, ext in (("nifti", ".nii.gz"), ("png", ".png"))
            if fmt in record["formats"]
        }
        missing = [p for pair in paths.values() for p in pair if not (output_dir / p).is_file()]
        if previous is None or missing:
            image, label = generate_phantom(item_seed, image_size, binary)
            if "nifti" in paths:
                save_nifti_atomic(output_dir / paths["nifti"][0], image[0], affine, dtype=np.float32)
                save_nifti_atomic(output_dir / paths["nifti"][1], label[0], affine, dtype=np.uint8)
            if "png" in paths:
                save_png_atomic(output_dir / paths["png"][0], _window_uint8(image[0], *_LUNG_WINDOW))
                save_png_atomic(output_dir / paths["png"][1], label[0])
        image_path, label_path = paths["nifti" if "nifti" in paths else "png"]
        entries.append({"image": image_path, "label": label_path, "case_id": case_id, "seed": item_seed})

    datalist = {
        "name": "monai_synth phantom thorax CT" + (" (binary lung)" if binary else ""),
        "description": "Procedural 2D axial non-contrast chest CT slices (HU), radiological convention.",
        "modality": {"0": "CT"},
        "labels": {str(v): k for k, v in labels.items()},
        "numTraining": len(entries),
        "training": entries,
        "phantom": record,
    }
    if previous != datalist:
        write_json_atomic(datalist_path, datalist)
    return datalist_path


def phantom_preview(image_size: int = 128, seed: int = 0, n: int = 8, alpha: float = 0.4) -> np.ndarray:
    """RGB grid of phantom slices, each shown plain and with coloured labels (for docs and a quick look).

    Each cell is ``[image | image + label overlay]`` side by side, four cells per row; images are
    shown in the lung window. Colours: left lung blue, right lung green, heart red, aorta yellow,
    trachea cyan.

    Args:
        image_size: slice size in pixels, in [32, 512].
        seed: seed of the first slice.
        n: number of slices, at least 1.
        alpha: overlay opacity in [0, 1].

    Returns:
        ``(rows * H, columns * 2 * W, 3)`` uint8 array.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    size = _check_size(image_size)
    images, labels = zip(*(generate_phantom(seed + k, size) for k in range(n)))
    level, width = _LUNG_WINDOW
    windowed = np.clip((np.stack(images)[:, :1] - (level - width / 2.0)) / width, 0.0, 1.0) * 2.0 - 1.0
    return pair_grid(windowed, np.stack(labels), columns=4, alpha=alpha)
