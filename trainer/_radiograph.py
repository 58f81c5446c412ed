"""Draws one synthetic frontal chest radiograph; the demo dataset is made of these.

The picture is built as a density map (soft tissue, bone, minus the air in the lungs),
then "exposed": blurred, windowed, gamma-corrected, noised and quantised. Findings fill
part of the lung air with fluid, so they whiten the lung, hide the vessels they cover
(dense consolidation) or leave them visible (ground glass), as on real films.

Coordinates: U runs to the image right, V downwards, both about [-1, 1] over the image;
the patient's right is on the image left (U < 0). Random rotation, scale and shift turn
these into pixel positions.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import TypedDict, TypeVar

import numpy as np
from PIL import Image, ImageDraw

from trainer.classes import CLASS_NAMES

_COVID, _OPACITY, _PNEUMONIA = (
    CLASS_NAMES.index(c) for c in ("covid", "lung_opacity", "pneumonia")
)


class _Tuning(TypedDict):
    severity_beta: tuple[float, float]
    faint: float
    gain: dict[int, float]
    vessels: float
    breast: float
    exposure: float
    aeration: float


# Difficulty, set with a ResNet-18 trained briefly at 64 px (benchmarks/demo_learnability.py).
# Severity in [0, 1] sets the number, size and density of the lesions: Beta(3, 1.2) for most
# sick cases, but a share ("faint") is drawn below _FAINT_MAX, where the findings fade out
# towards nothing, so some sick cases cannot be told from normal ones.
# The other entries scale the findings per class, the look-alikes every class shares
# (vessel contrast, breast shadows), the jitter of the display window and how much the
# darkness of normal lungs varies: the last keeps brightness statistics from telling
# the classes apart (sick lungs are brighter, but so are many normal films).
_TUNING: _Tuning = {
    "severity_beta": (3.0, 1.2),
    "faint": 0.06,
    "gain": {_COVID: 1.0, _OPACITY: 1.6, _PNEUMONIA: 1.6},
    "vessels": 0.6,
    "breast": 0.5,
    "exposure": 1.0,
    "aeration": 1.0,
}
_FAINT_MAX = 0.2


# --------------------------------------------------------------------------- array helpers


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: u to the image right, v downwards."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    u = np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size)))
    v = np.ascontiguousarray(np.broadcast_to(c[:, None], (size, size)))
    return u, v


@functools.lru_cache(maxsize=64)
def _gauss_kernel(sigma: float) -> tuple[float, ...]:
    r = max(1, math.ceil(2.5 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return tuple((k / k.sum()).tolist())


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding.

    Shifted sums rather than a matrix product: BLAS threads cost more than they save on
    images this small, and timings would depend on the machine's load. The kernel is
    symmetric, so each pair of taps costs one multiplication.
    """
    if sigma_px < 0.05:
        return img
    kernel = _gauss_kernel(round(sigma_px, 2))
    r = len(kernel) // 2
    for _ in range(2):  # down the columns, then (transposed) along the rows
        n = img.shape[0]
        p = np.empty((n + 2 * r, img.shape[1]), img.dtype)
        p[r : r + n] = img
        p[:r] = img[:1]
        p[r + n :] = img[-1:]
        out = kernel[r] * p[r : r + n]
        tmp = np.empty_like(out)
        for i in range(r):
            np.add(p[i : i + n], p[2 * r - i : 2 * r - i + n], out=tmp)
            tmp *= kernel[i]
            out += tmp
        img = out.T
    return np.ascontiguousarray(img)


@functools.lru_cache(maxsize=16)
def _upsampler(k: int, size: int) -> np.ndarray:
    """PIL's bicubic interpolation from ``k`` to ``size`` samples, as a (k, size) matrix."""
    eye = Image.fromarray(np.eye(k, dtype=np.float32), mode="F")
    weights = np.asarray(eye.resize((size, k), Image.Resampling.BICUBIC), np.float32).copy()
    weights.flags.writeable = False
    return weights


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    """Zero-mean random field of about unit variance with about k/2 bumps per side.

    A k x k lattice of random values, enlarged bicubically as PIL would do it, but by two
    small matrix products: a tenth of the time of PIL's resampling of float images.
    """
    lattice = rng.standard_normal((k, k), dtype=np.float32)
    field: np.ndarray = _upsampler(k, shape[0]).T @ (lattice @ _upsampler(k, shape[1]))
    return field


@functools.lru_cache(maxsize=1)
def _normal_levels() -> np.ndarray:
    """256 equally likely values of a standard normal variable (its quantiles), variance 1."""
    levels = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
    levels /= levels.std()
    levels.flags.writeable = False
    return levels


def _pixel_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Independent, about standard normal noise per pixel: one random byte each.

    Three times faster than ``standard_normal``; with at most 6.5 grey levels of noise,
    256 levels of it cannot be told from a continuous normal once the image is quantised.
    """
    index = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return np.take(_normal_levels(), index)


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """0 outside, 1 inside, linear across ``width`` around the boundary d = 0."""
    t = d * (1.0 / width)
    t += 0.5
    np.maximum(t, 0.0, out=t)
    np.minimum(t, 1.0, out=t)
    return t


def _quantiles(x: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low`` and ``high`` quantiles of ``x``, interpolated as ``np.quantile`` does.

    A partial sort around the four entries needed, without ``np.quantile``'s overhead,
    which costs more than the sorting on arrays this small.
    """
    flat = x.reshape(-1)
    n = len(flat)
    ranks = [q * (n - 1) for q in (low, high)]
    below = [min(math.floor(r), n - 2) for r in ranks]
    part = np.partition(flat, [i + k for i in below for k in (0, 1)])
    out = []
    for r, i in zip(ranks, below, strict=True):
        a, b = float(part[i]), float(part[i + 1])
        out.append(a + (b - a) * (r - i))
    return out[0], out[1]


Window = tuple[slice, slice]
_Coord = TypeVar("_Coord", float, np.ndarray)


class _Frame:
    """Maps anatomy coordinates to pixels and back (patient position, collimation)."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.theta = rng.normal(0.0, 0.045)
        self.scale = rng.uniform(0.9, 1.08)
        self.tx, self.ty = rng.normal(0.0, 0.035), rng.normal(0.02, 0.035)
        u, v = _grid(size)
        c, s = math.cos(self.theta), math.sin(self.theta)
        du, dv = u - self.tx, v - self.ty
        self.U = (c * du + s * dv) * (1.0 / self.scale)
        self.V = (-s * du + c * dv) * (1.0 / self.scale)
        self.px = 2.0 / (size * self.scale)  # one pixel in anatomy units
        # V is linear in the pixel position, so its extremes lie at the image's corner pixels.
        e = 1 - 1 / size
        vs = [
            (-s * (a * e - self.tx) + c * (b * e - self.ty)) / self.scale
            for a in (-1, 1)
            for b in (-1, 1)
        ]
        self.v_range = (min(vs), max(vs))

    def to_pixels(self, U: _Coord, V: _Coord) -> tuple[_Coord, _Coord]:
        """Pixel (column, row) positions of anatomy points; arrays or floats."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        u = self.tx + self.scale * (c * U - s * V)
        v = self.ty + self.scale * (s * U + c * V)
        return (u + 1) * 0.5 * self.size - 0.5, (v + 1) * 0.5 * self.size - 0.5

    def rows_to_pixels(self, points: np.ndarray) -> np.ndarray:
        """``to_pixels`` for an (n, 2) array of (U, V) rows, as one matrix product."""
        c, s, h = math.cos(self.theta), math.sin(self.theta), 0.5 * self.size
        k = h * self.scale
        origin = ((self.tx + 1) * h - 0.5, (self.ty + 1) * h - 0.5)
        pixels: np.ndarray = points @ np.array([[k * c, k * s], [-k * s, k * c]]) + origin
        return pixels

    def window(self, u0: float, u1: float, v0: float, v1: float) -> Window:
        """Pixel rows and columns that hold the anatomy rectangle [u0, u1] x [v0, v1]."""
        # Plain floats: numpy's per-call overhead would cost more than the arithmetic.
        xs, ys = [], []
        for U, V in ((u0, v0), (u1, v0), (u0, v1), (u1, v1)):
            x, y = self.to_pixels(U, V)
            xs.append(x)
            ys.append(y)
        n = self.size
        rows = slice(max(0, math.floor(min(ys)) - 1), min(n, math.ceil(max(ys)) + 2))
        cols = slice(max(0, math.floor(min(xs)) - 1), min(n, math.ceil(max(xs)) + 2))
        return rows, cols


def _empty(win: Window) -> bool:
    return bool(win[0].start >= win[0].stop or win[1].start >= win[1].stop)


def _add_blob(
    target: np.ndarray, frame: _Frame, cu: float, cv: float, ru: float, rv: float, amp: float
) -> None:
    """Add a Gaussian bump centred at (cu, cv) with radii (ru, rv) to ``target``."""
    win = frame.window(cu - 3 * ru, cu + 3 * ru, cv - 3 * rv, cv + 3 * rv)
    if _empty(win):
        return
    du = (frame.U[win] - cu) * (1 / ru)
    dv = (frame.V[win] - cv) * (1 / rv)
    target[win] += amp * np.exp(-0.5 * (du * du + dv * dv))


def _ramp_in_place(d: np.ndarray, width: float, top: float = 1.0) -> np.ndarray:
    """``top * _ramp(d, width)``, overwriting ``d`` (a temporary of the caller's)."""
    d *= top / width
    d += 0.5 * top
    np.maximum(d, 0.0, out=d)
    np.minimum(d, top, out=d)
    return d


def _draw_segments(frame: _Frame, seg: np.ndarray, blur_px: float = 0.0) -> np.ndarray:
    """Rasterise rows (U0, V0, U1, V1, width in pixels, value) as lines, all in one go.

    As a line-drawing routine does: one sample per pixel step along the line's major axis,
    and across it as many pixels as the width at right angles to the line takes (more for
    a diagonal line), each rounded to its pixel. Where lines overlap the larger value wins,
    so the result does not depend on the order of the rows. ``blur_px``: then blurred as
    ``_blur`` would, but only over the rectangle the lines can reach.
    """
    size, n = frame.size, len(seg)
    ends = frame.rows_to_pixels(seg[:, :4].reshape(-1, 2))  # pixel (x, y) of both ends
    start = ends[0::2]
    delta = ends[1::2] - start
    extent = np.abs(delta)
    major = extent.max(axis=1)
    steps = np.ceil(major)
    along = steps.astype(np.intp) + 1
    np.maximum(steps, 1.0, out=steps)
    stretch = np.hypot(delta[:, 0], delta[:, 1]) / np.maximum(major, 1e-9)  # 1 to sqrt(2)
    across = np.rint(np.maximum(1.0, np.rint(seg[:, 4])) * stretch).astype(np.intp)
    np.maximum(across, 1, out=across)
    count = along * across
    line = np.repeat(np.arange(n), count)
    k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    across = across[line]
    i, j = np.divmod(k, across)
    offset = j - (across - 1) * 0.5
    # Across the line is along the minor axis: y for a flat line, x for a steep one.
    minor = np.zeros((n, 2))
    minor[np.arange(n), (extent[:, 0] >= extent[:, 1]).astype(np.intp)] = 1.0
    pts = start[line] + i[:, None] * (delta / steps[:, None])[line]
    pts += offset[:, None] * minor[line]
    cells = np.floor(pts + 0.5).astype(np.intp)
    inside = ((cells >= 0) & (cells < size)).all(axis=1)
    col, row = cells[inside].T
    canvas = np.zeros((size, size), np.float32)
    np.maximum.at(canvas.reshape(-1), row * size + col, seg[line[inside], 5].astype(np.float32))
    if blur_px >= 0.05 and len(row):
        # A margin of the kernel's radius keeps zeros at the rectangle's edges, so its
        # edge padding adds nothing that blurring the whole image would not.
        r = len(_gauss_kernel(round(blur_px, 2))) // 2
        win = (
            slice(max(0, int(row.min()) - r), int(row.max()) + r + 1),
            slice(max(0, int(col.min()) - r), int(col.max()) + r + 1),
        )
        canvas[win] = _blur(canvas[win], blur_px)
    return canvas


@functools.lru_cache(maxsize=16)
def _fan(n: int) -> np.ndarray:
    """Directions of a tree's n main branches, from up to down, before jitter."""
    fan = np.linspace(-1.5, 1.3, n)
    fan.flags.writeable = False
    return fan


def _trees(
    rng: np.random.Generator, roots: dict[int, tuple[float, float]], levels: int, px: float
) -> np.ndarray:
    """Segments of branching trees growing laterally from ``roots`` {side: (U, V)} (vessels).

    Each tree has 5 to 7 main branches; each branch splits in two (a few children die
    off), turning, shortening and thinning at each level. The trees are grown together,
    with every possible child's random numbers drawn up front and the dead ones dropped at
    the end: a few dozen array operations in all rather than several per branch and level.
    """
    counts = [int(rng.integers(5, 8)) for _ in roots]
    n = sum(counts)
    side = np.repeat(np.array(list(roots), float), counts)
    x0 = np.repeat([u for u, _ in roots.values()], counts)
    y0 = np.repeat([v for _, v in roots.values()], counts)
    ang = np.concatenate([_fan(c) for c in counts]) + rng.normal(0, 0.18, n)
    length = rng.uniform(0.11, 0.19, n)
    slots = n * (2**levels - 2)  # the children of levels 1 .. levels - 1, two per parent
    keep = rng.random(slots) > 0.12
    spread = rng.uniform(0.25, 0.55, slots // 2)[:, None] * np.array([-1.0, 1.0])
    turn = rng.normal(0, 0.1, slots)
    shrink = rng.uniform(0.6, 0.85, slots)
    alive = np.ones(n, bool)
    columns: list[list[np.ndarray]] = [[], [], [], [], []]
    done = 0
    for level in range(levels):
        x1 = x0 + side * length * np.cos(ang)
        y1 = y0 + length * np.sin(ang)
        for column, values in zip(columns, (x0, y0, x1, y1, alive), strict=True):
            column.append(values)
        if level == levels - 1:
            break
        m = len(ang)
        new = slice(done, done + 2 * m)
        ang = (ang[:, None] + spread[done // 2 : done // 2 + m]).ravel() + turn[new]
        length = np.repeat(length, 2) * shrink[new]
        x0, y0, side = np.repeat(x1, 2), np.repeat(y1, 2), np.repeat(side, 2)
        alive = np.repeat(alive, 2) & keep[new]
        done += 2 * m
    width = np.repeat(0.04 * 0.72 ** np.arange(levels), [len(a) for a in columns[4]])
    value = np.minimum((width * 25) ** 1.3, 1.0)
    x0, y0, x1, y1, alive = (np.concatenate(column) for column in columns)
    return np.column_stack([x0, y0, x1, y1, width / px, value])[alive]


# --------------------------------------------------------------------------- anatomy


class _Anatomy:
    """One patient's chest as maps on the pixel grid: soft tissue, bone, lung air, vessels."""

    def __init__(self, rng: np.random.Generator, frame: _Frame) -> None:
        self.frame = frame
        self.W = rng.uniform(0.74, 0.9)  # half-width of the thorax at the costophrenic angles
        self.apex = rng.uniform(-0.82, -0.66)
        dome_r = rng.uniform(0.22, 0.5)  # depth of inspiration
        self.dome = {-1: dome_r, 1: dome_r + rng.uniform(0.0, 0.09)}
        self.mid = rng.uniform(0.07, 0.11)  # half-width of the upper mediastinum
        spine_u = rng.normal(0.0, 0.015)
        soft = self._soft_tissue(rng)
        hila_v = self._heart(rng)
        air = self._lungs(rng)
        self._airways(rng, air, spine_u)

        self.hila = {
            s: (s * (self.mid + rng.uniform(0.07, 0.11)), hila_v + rng.uniform(-0.03, 0.03))
            for s in (-1, 1)
        }
        for hu, hv in self.hila.values():
            _add_blob(soft, frame, hu, hv, 0.05, 0.07, 0.05)
        self.air, self.soft = air, soft
        self.ribs, self.bone = self._bones(rng, spine_u)
        segments = _trees(rng, self.hila, 4, frame.px)
        self.vessels = _draw_segments(frame, segments, 0.7 * frame.size / 128)

    def _soft_tissue(self, rng: np.random.Generator) -> np.ndarray:
        """Body outline and soft tissue, thicker in the middle and below the diaphragm."""
        U, V, px = self.frame.U, self.frame.V, self.frame.px
        body_w = self.W + rng.uniform(0.1, 0.2) - 0.08 * (V + 0.1) ** 2
        rel = np.abs(U) / body_w
        soft = _ramp(body_w - np.abs(U), 4 * px) * (0.75 - 0.2 * np.minimum(rel * rel, 1.0))
        soft += 0.05 * _ramp(V - 0.5 * (self.dome[-1] + self.dome[1]) - 0.1, 0.4)
        return soft

    def _heart(self, rng: np.random.Generator) -> float:
        """Heart and mediastinum: each lung's medial border widens below the hila.

        Sets the border's shape; returns the height of the hila.
        """
        hila_v = self.apex + rng.uniform(0.45, 0.55) * (self.dome[-1] - self.apex)
        ctr = rng.uniform(0.4, 0.55)  # cardiothoracic ratio
        right = rng.uniform(0.1, 0.19)
        extent = {-1: right, 1: ctr * 2 * self.W - right}
        top = {-1: hila_v + rng.uniform(0.02, 0.1), 1: hila_v - rng.uniform(0.0, 0.08)}
        self.heart_border = {s: (top[s], extent[s]) for s in (-1, 1)}
        self._knob = (self.apex + rng.uniform(0.3, 0.4), rng.uniform(0.03, 0.06))
        return hila_v

    def _lungs(self, rng: np.random.Generator) -> np.ndarray:
        """Lung air: per side an ellipse cut by the diaphragm dome and the mediastinum."""
        frame = self.frame
        U, V = frame.U, frame.V
        self.lung_params = {}
        air = np.zeros_like(U)
        for s in (-1, 1):
            w_lung = self.W * rng.uniform(0.97, 1.03)
            a_c = 0.45 * w_lung
            ax = w_lung - a_c
            v_c = self.dome[s] - 0.05
            ay = v_c - self.apex
            curv = rng.uniform(0.7, 1.5)
            self.lung_params[s] = (a_c, ax, v_c, ay)
            lo, hi = sorted((0.0, s * (w_lung + 0.03)))
            win = frame.window(lo, hi, self.apex - 0.03, self.dome[s] + curv * ax * ax + 0.03)
            if _empty(win):
                continue
            air[win] += self._lung(s, U[win] * s, V[win], curv)
        # How dark the lungs come out varies from film to film (habitus, inspiration, kV).
        aeration = 0.42 * math.exp(_TUNING["aeration"] * rng.uniform(-0.5, 0.3))
        air *= aeration * (1 + 0.08 * _smooth_noise(rng, air.shape, 6))
        return air

    def _lung(self, s: int, a: np.ndarray, v: np.ndarray, curv: float) -> np.ndarray:
        """Air in lung s at points ``a`` (distance from the midline, towards s), ``v``."""
        a_c, ax, v_c, ay = self.lung_params[s]
        knob_v, knob_w = self._knob
        da = a - a_c
        r2 = da * (1 / ax)
        r2 *= r2
        ev = v - v_c
        ev *= 1 / ay
        ev *= ev
        r2 += ev
        q = np.subtract(1, r2, out=r2)  # 1 - r2: 0 on the ellipse, 1 in its centre
        inside = q * (0.5 * min(ax, ay))
        da *= da
        da *= curv
        da += self.dome[s]
        da -= v
        da *= 0.8
        np.minimum(inside, da, out=inside)  # below the dome
        # Heart border: a quarter ellipse from its top to its widest point near the dome.
        top, extent = self.heart_border[s]
        t = v - top
        t *= 1 / (self.dome[s] - 0.04 - top)
        np.clip(t, 0, 1, out=t)
        border = np.subtract(2, t)
        border *= t
        np.sqrt(border, out=border)  # sqrt(1 - (1 - t)^2)
        border *= extent - self.mid
        border += self.mid
        if s == 1:  # aortic knob
            knob = v - knob_v
            knob *= 1 / 0.06
            knob *= knob
            np.negative(knob, out=knob)
            np.exp(knob, out=knob)
            knob *= knob_w
            border += knob
        np.subtract(a, border, out=border)
        np.minimum(inside, border, out=inside)
        mask = _ramp_in_place(inside, 2.0 * self.frame.px)
        # Thicker lung (darker) in the middle of each field, thinner at the apex.
        depth = np.clip(q, 0, 1, out=q)
        depth *= 0.25
        depth += 0.75
        depth *= _ramp_in_place(v - (self.apex + 0.12), 0.45)
        np.maximum(depth, 0.35, out=depth)
        depth *= mask
        return depth

    def _airways(self, rng: np.random.Generator, air: np.ndarray, spine_u: float) -> None:
        """Add the trachea, and gas in the stomach under the left dome, to ``air``."""
        frame = self.frame
        U, V, px = frame.U, frame.V, frame.px
        carina = self.apex + rng.uniform(0.3, 0.4)
        win = frame.window(spine_u - 0.05, spine_u + 0.05, -1.3, carina + 0.03)
        if not _empty(win):
            tr = _ramp(0.028 - np.abs(U[win] - spine_u), 1.5 * px)
            air[win] += 0.15 * tr * _ramp(carina - V[win], 3 * px)
        if rng.random() < 0.5:
            bubble = np.zeros_like(air)
            gv = self.dome[1] + rng.uniform(0.1, 0.16)
            _add_blob(bubble, frame, rng.uniform(0.25, 0.5), gv, rng.uniform(0.06, 0.1), 0.04, 1.0)
            air += 0.2 * _ramp(bubble - 0.5, 0.5)

    def lateral_edge(self, s: int, V: float) -> float:
        """Distance from the midline of lung s's lateral border at height V."""
        a_c, ax, v_c, ay = self.lung_params[s]
        return a_c + ax * math.sqrt(max(0.0, 1 - ((V - v_c) / ay) ** 2))

    def point(self, s: int, t: float, q: float) -> tuple[float, float]:
        """A point of lung s at height fraction t (0 apex, 1 base) and lateral fraction q."""
        V = self.apex + t * (self.dome[s] - self.apex)
        return s * (self.mid + q * (self.lateral_edge(s, V) - self.mid)), V

    def _bones(self, rng: np.random.Generator, spine_u: float) -> tuple[np.ndarray, np.ndarray]:
        """Ribs (seen against aerated lung) and the other bones, as two maps.

        Each rib pattern is a ramp of the distance to the nearest arc, limited by envelopes;
        a product of two ramps that cannot both be partial at one point is the ramp of the
        smaller argument, which saves most of the work of the envelopes.
        """
        U, V, px = self.frame.U, self.frame.V, self.frame.px
        a = U - spine_u
        np.abs(a, out=a)
        # Posterior ribs: parallel arcs from the spine, rising, then curving down laterally.
        spacing = (self.dome[-1] - self.apex) / rng.uniform(7.5, 9.0)
        slope, bend = rng.uniform(0.35, 0.55), rng.uniform(0.7, 1.0)
        phase = bend * a  # phase = (V + slope a - bend a^2 +- tilt - apex + 0.06) / spacing
        np.subtract(slope, phase, out=phase)
        phase *= a
        phase += V
        tilt = 0.02 * rng.normal()  # the two sides' ribs a little out of step
        phase += np.copysign(abs(tilt), U if tilt >= 0 else -U)
        phase -= self.apex - 0.06
        phase *= 1 / spacing
        thick = rng.uniform(0.38, 0.5)  # share of the spacing covered by bone
        dist = np.floor(phase)
        np.subtract(phase, dist, out=dist)
        dist -= 0.5
        np.abs(dist, out=dist)  # from the middle of the nearest rib, in spacings
        ribs = _ramp_in_place(thick * 0.5 - dist, max(0.08, 2.5 * px / spacing))
        dist -= thick * 0.5 - 1.6 * px / spacing  # the bright cortex
        ribs -= _ramp_in_place(np.negative(dist, out=dist), 0.1, top=0.5)
        ribs *= _ramp_in_place(np.minimum(phase, 10.5 - phase, out=phase), 0.3)
        reach = np.minimum(self.W + 0.1 - a, a - 0.05)
        ribs *= _ramp_in_place(reach, 4 * px, top=0.05)
        # Anterior ribs: fainter, sloping down towards the midline, above the domes.
        shift = rng.uniform(0, 1) * spacing
        win = self.frame.window(
            spine_u - self.W - 0.05,
            spine_u + self.W + 0.05,
            self.frame.v_range[0],
            self.dome[-1] + 0.1,
        )
        if not _empty(win):
            a, V = a[win], V[win]
            phase = V - 0.55 * a
            phase += shift
            phase *= 1 / (spacing * 1.1)
            dist = np.floor(phase)
            np.subtract(phase, dist, out=dist)
            dist -= 0.5
            np.abs(dist, out=dist)
            ant = _ramp_in_place(np.subtract(0.2, dist, out=dist), 0.15)
            ant *= _ramp_in_place(np.minimum(a - 0.25, self.W - a), 0.1, top=0.02)
            ant *= _ramp_in_place(np.subtract(self.dome[-1], V), 0.2)
            ribs[win] += ant
        return ribs, self._other_bones(rng, spine_u, spacing)

    def _other_bones(self, rng: np.random.Generator, spine_u: float, spacing: float) -> np.ndarray:
        """Clavicles and spine, each worked out only in the window that can hold it."""
        frame = self.frame
        px = frame.px
        bone = np.zeros_like(frame.U)
        # Clavicles, rising from the sternum towards the shoulders: over 0 <= a <= 0.75
        # their centre line lies between top - 0.0975 and top.
        top = self.apex + rng.uniform(0.0, 0.1)
        reach = 0.035 + 2 * px
        win = frame.window(spine_u - 0.75, spine_u + 0.75, top - 0.0975 - reach, top + reach)
        if not _empty(win):
            a, V = np.abs(frame.U[win] - spine_u), frame.V[win]
            cl_v = top - 0.22 * a + 0.12 * a * a
            clav = _ramp(0.035 - np.abs(V - cl_v), 2 * px)
            clav *= _ramp(0.7 - a, 0.1) * _ramp(a - 0.04, 0.05)
            bone[win] += 0.13 * clav
        # Spine: a column of vertebrae behind the mediastinum.
        period = spacing * rng.uniform(0.9, 1.1)
        half = 0.065 + 2 * px
        win = frame.window(spine_u - half, spine_u + half, *frame.v_range)
        if not _empty(win):
            a, V = np.abs(frame.U[win] - spine_u), frame.V[win]
            vert = 0.75 + 0.25 * np.cos(V * (2 * math.pi / period))
            bone[win] += 0.08 * _ramp(0.065 - a, 3 * px) * vert
        return bone


# --------------------------------------------------------------------------- findings


def _ground_glass(rng: np.random.Generator, anat: _Anatomy, severity: float) -> np.ndarray:
    """COVID-19: hazy patches, bilateral, peripheral, mostly in the lower zones."""
    frame = anat.frame
    fill = np.zeros_like(frame.U)
    n = 2 + round(4 * severity * rng.uniform(0.5, 1.2))
    first = int(rng.choice((-1, 1)))
    sides = [first, -first] + [int(rng.choice((-1, 1))) for _ in range(n)]
    if rng.random() < 0.15:
        sides = [first] * len(sides)  # occasionally one-sided
    for s in sides[:n]:
        cu, cv = anat.point(s, rng.beta(3.2, 1.4), rng.beta(4.0, 1.3))
        r = rng.uniform(0.12, 0.19) * (0.6 + 0.8 * severity)
        ru, rv = r * rng.uniform(0.7, 1.2), r * rng.uniform(0.8, 1.5)
        _add_blob(fill, frame, cu, cv, ru, rv, rng.uniform(0.7, 1.0))
    # Hazy: even at its densest, ground glass leaves some air, so the vessels still show.
    level = min(0.8, 0.45 + 1.2 * severity)
    texture = 1 + 0.3 * _smooth_noise(rng, fill.shape, 20)
    return np.minimum(np.minimum(fill, 1.0) * texture * level, 0.85)


def _consolidation(rng: np.random.Generator, anat: _Anatomy, severity: float) -> np.ndarray:
    """Lung opacity: dense lobar or focal consolidation with fuzzy edges, often one side."""
    frame = anat.frame
    U, V = frame.U, frame.V
    fill = np.zeros_like(U)
    s0 = int(rng.choice((-1, 1)))
    irregular = 0.3 * _smooth_noise(rng, fill.shape, 12)
    for s in (s0,) if rng.random() < 0.75 else (s0, -s0):
        kinds, p = ("lower", "upper", "middle", "focal"), (0.3, 0.2, 0.1, 0.4)
        kind = rng.choice(kinds, p=p)
        region = np.zeros_like(U)
        if kind == "focal":
            cu, cv = anat.point(s, rng.uniform(0.2, 0.85), rng.uniform(0.25, 0.85))
            r = (0.1 + 0.12 * severity) * rng.uniform(0.8, 1.2)
            ru, rv = r * rng.uniform(0.8, 1.3), r * rng.uniform(0.8, 1.3)
        elif kind == "middle":  # middle lobe or lingula: against the heart border
            top, extent = anat.heart_border[s]
            cu, cv = s * (extent + 0.06), top + 0.55 * (anat.dome[s] - top)
            ru, rv = 0.1 + 0.1 * severity, 0.1 + 0.12 * severity
        elif kind == "lower":  # lower lobe: above the dome, whose outline it hides
            cu, cv = anat.point(s, rng.uniform(0.85, 0.95), rng.uniform(0.35, 0.65))
            ru, rv = 0.14 + 0.16 * severity, 0.12 + 0.2 * severity
        else:  # upper lobe
            cu, cv = anat.point(s, rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.6))
            ru, rv = 0.13 + 0.12 * severity, 0.1 + 0.12 * severity
        _add_blob(region, frame, cu, cv, ru, rv, 1.0)
        region = _ramp(region + irregular - 0.3, 0.3)
        if kind == "upper" and s == -1 and rng.random() < 0.6:
            # The right upper lobe stops sharply at the horizontal fissure.
            fissure = cv + rv * rng.uniform(0.6, 1.2)
            region *= _ramp(fissure - V, 0.025)
        density = rng.uniform(0.88, 0.97)
        fill += region * _ramp(s * U, 0.05) * density
    if rng.random() < 0.25:
        fill += _effusion(anat, s0, severity)
    return fill


def _effusion(anat: _Anatomy, s: int, severity: float) -> np.ndarray:
    """Pleural fluid: fills the costophrenic angle with a meniscus rising laterally."""
    U, V = anat.frame.U, anat.frame.V
    a_c, ax, _, _ = anat.lung_params[s]
    lateral = np.clip((s * U - anat.mid) * (1 / (ax + a_c - anat.mid)), 0, 1)
    level = anat.dome[s] + 0.2 - (0.12 + 0.25 * severity) * (0.4 + 0.9 * lateral * lateral)
    fluid: np.ndarray = 0.8 * _ramp(V - level, 0.06) * _ramp(s * U, 0.05)
    return fluid


def _interstitial(rng: np.random.Generator, anat: _Anatomy, severity: float) -> np.ndarray:
    """Viral pneumonia: streaky opacities around both hila, central, over a perihilar haze."""
    frame = anat.frame
    rows = []
    fill = np.zeros_like(frame.U)
    for s in (-1, 1):
        hu, hv = anat.hila[s]
        k = int((25 + 50 * severity) * rng.uniform(0.8, 1.2))
        # Short lines scattered around the hilum, mostly pointing away from it.
        ang = rng.uniform(-1.8, 1.6, k)
        r0 = 0.3 * rng.beta(1.3, 2.0, k) + 0.03
        x0, y0 = hu + s * r0 * np.cos(ang), hv + r0 * np.sin(ang)
        turn = ang + rng.normal(0, 0.6, k)
        length = rng.uniform(0.04, 0.11, k)
        x1, y1 = x0 + s * length * np.cos(turn), y0 + length * np.sin(turn)
        width = rng.uniform(0.01, 0.02, k) / frame.px
        rows.append(np.stack([x0, y0, x1, y1, width, rng.uniform(0.4, 0.8, k)], axis=1))
        r = 0.18 + 0.12 * severity
        _add_blob(fill, frame, hu + s * 0.08, hv + 0.05, r * 1.1, r * 1.3, rng.uniform(0.6, 1.0))
    streaks = _draw_segments(frame, np.concatenate(rows), 1.1 * frame.size / 128)
    return (0.5 * fill + 0.9 * streaks) * (0.5 + 2.0 * severity)


_FINDINGS = {_COVID: _ground_glass, _OPACITY: _consolidation, _PNEUMONIA: _interstitial}


# --------------------------------------------------------------------------- acquisition


def _draw_marker(img: Image.Image, rng: np.random.Generator) -> None:
    """Burn a side marker (an 'L' or 'R', sometimes boxed) into a top corner."""
    size = img.size[0]
    h = max(5, round(size * rng.uniform(0.05, 0.08)))
    w = max(3, round(h * 0.65))
    stroke = max(1, round(h / 7))
    x = round(size * rng.uniform(0.04, 0.14))
    x = size - x - w if rng.random() < 0.5 else x
    y = round(size * rng.uniform(0.03, 0.12))
    value = int(rng.integers(215, 256))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:
        draw.line([(x, y), (x, y + h), (x + w, y + h)], fill=value, width=stroke)
    else:
        mid = y + h // 2
        draw.line([(x, y + h), (x, y), (x + w - 1, y), (x + w, y + 1)], fill=value, width=stroke)
        draw.line([(x + w, y + 1), (x + w, mid - 1), (x + w - 1, mid)], fill=value, width=stroke)
        draw.line([(x + w - 1, mid), (x, mid)], fill=value, width=stroke)
        draw.line([(x + w // 3, mid), (x + w, y + h)], fill=value, width=stroke)
    if rng.random() < 0.4:
        m = stroke + 2
        draw.rectangle((x - m, y - m, x + w + m, y + h + m), outline=value)


def _leads(rng: np.random.Generator, frame: _Frame) -> np.ndarray:
    """ECG electrodes and their wires: monitoring, unrelated to the class."""
    size = frame.size
    canvas = Image.new("F", (size, size), 0.0)
    draw = ImageDraw.Draw(canvas)
    k = int(rng.integers(2, 5))
    xs, ys = frame.to_pixels(rng.uniform(-0.8, 0.8, k), rng.uniform(-0.8, 0.3, k))
    r = max(1.5, size * 0.022)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        draw.ellipse((x - r, y - r, x + r, y + r), outline=1.0, width=max(1, round(r / 2.5)))
        pts = [(x, y)]
        dx, dy = rng.uniform(-0.15, 0.15) * size, rng.uniform(0.05, 0.2) * size
        for _ in range(3):
            dx, dy = dx + rng.normal(0, 0.05) * size, dy + rng.normal(0, 0.05) * size
            pts.append((pts[-1][0] + dx, pts[-1][1] + dy))
        draw.line(pts, fill=0.6, width=max(1, round(size / 200)))
    return np.asarray(canvas, np.float32)


def severity_of(rng: np.random.Generator) -> float:
    """How marked a case's findings are, in [0, 1]; mostly clear, a few nearly invisible."""
    faint, usual, low = rng.random(), rng.beta(*_TUNING["severity_beta"]), rng.random()
    return float(_FAINT_MAX * low if faint < _TUNING["faint"] else usual)


def render_case(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One synthetic chest radiograph of class ``label`` (competition index), uint8 (size, size).

    Anatomy, acquisition and the severity of the findings are all drawn from ``rng``.
    """
    if label not in range(len(CLASS_NAMES)):
        raise ValueError(f"label must be a class index 0..{len(CLASS_NAMES) - 1}, got {label}")
    if not 32 <= size <= 1024:
        raise ValueError(f"size must be between 32 and 1024 pixels, got {size}")
    return _render(rng, label, size)


def _render(
    rng: np.random.Generator, label: int, size: int, severity: float | None = None
) -> np.ndarray:
    frame = _Frame(rng, size)
    anat = _Anatomy(rng, frame)
    drawn = severity_of(rng)
    severity = drawn if severity is None else severity
    if label in _FINDINGS:
        # Below _FAINT_MAX the findings fade out: at severity 0 a sick case looks normal.
        fade = min(1.0, severity / _FAINT_MAX)
        fill = _FINDINGS[label](rng, anat, severity) * (_TUNING["gain"][label] * fade)
    else:
        fill = np.zeros_like(frame.U)

    # Breast and nipple shadows: soft tissue over the lower zones, in any class.
    soft = anat.soft  # the anatomy is not used again: its map can take them in place
    if rng.random() < 0.35:
        b = rng.uniform(0.03, 0.08) * _TUNING["breast"]
        for s in (-1, 1):
            cu, cv = anat.point(s, rng.uniform(0.85, 1.05), rng.uniform(0.7, 1.0))
            r = rng.uniform(0.3, 0.42)
            win = frame.window(cu - 1.5 * r, cu + 1.5 * r, cv - 1.2 * r, cv + 1.2 * r)
            if not _empty(win):
                dist = np.hypot(frame.U[win] - cu, (frame.V[win] - cv) * 1.3)
                soft[win] += b * _ramp(r - dist, r)
    if rng.random() < 0.25:
        for s in (-1, 1):
            cu, cv = anat.point(s, rng.uniform(0.75, 0.95), rng.uniform(0.4, 0.7))
            _add_blob(soft, frame, cu, cv, 0.018, 0.018, 0.12)

    # Where fluid fills the airspaces the vessels vanish, but aerated bronchi stay dark.
    np.clip(fill, 0, 0.95, out=fill)
    vessels = anat.vessels
    aerated = 1 - fill * (1 - 0.6 * vessels * fill)
    air = anat.air * aerated
    vessel_contrast = rng.uniform(0.45, 0.65) * _TUNING["vessels"]
    # Ribs stand out against aerated lung, much less against soft tissue or fluid.
    ribs = anat.ribs * (0.35 + 1.55 * np.minimum(air, 0.42))
    density = soft + anat.bone + ribs - air * (1 - vessel_contrast * vessels)
    if rng.random() < 0.1:
        density += 0.25 * _leads(rng, frame)
    density = _blur(density, rng.uniform(0.45, 0.95) * size / 128)
    return _expose(rng, density, frame)


def _expose(rng: np.random.Generator, density: np.ndarray, frame: _Frame) -> np.ndarray:
    """The film: window, heel effect, gamma, noise, collimator shutters, side marker."""
    size = frame.size
    # Like a modality's automatic windowing: the darkest and brightest 1 % set the window,
    # so how much of the image is dense does not set its overall brightness.
    spread = _TUNING["exposure"]
    q_lo, q_hi = _quantiles(density[::3, ::3], 0.01, 0.99)
    width = q_hi - q_lo
    lo = q_lo + width * spread * rng.uniform(-0.15, 0.1)
    hi = q_hi + width * spread * rng.uniform(-0.1, 0.2)
    img = (density - lo) * (1 / (hi - lo))
    img *= 1 + rng.normal(0, 0.05) * frame.V + rng.normal(0, 0.03) * frame.U
    np.clip(img, 0, 1, out=img)
    img **= math.exp(spread * rng.uniform(-0.29, 0.3))
    img += rng.uniform(0.005, 0.025) * _pixel_noise(rng, size)
    img += rng.uniform(0.0, 0.02) * _smooth_noise(rng, img.shape, 32)
    if rng.random() < 0.15:
        edge, width = int(rng.integers(0, 4)), int(size * rng.uniform(0.02, 0.06))
        band = slice(0, width) if edge < 2 else slice(size - width, size)
        value = rng.uniform(0.0, 0.1) if rng.random() < 0.7 else rng.uniform(0.8, 1.0)
        img[(band, slice(None)) if edge % 2 == 0 else (slice(None), band)] = value

    img *= 255
    img += 0.5
    pixels = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L")
    if rng.random() < 0.8:
        _draw_marker(pixels, rng)
    return np.asarray(pixels)
