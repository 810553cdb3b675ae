"""The painting primitives of the generated faces: anti-aliased ellipses, rings, lines and arcs
blended into a float (3, H, W) image, and the shared noise and hair textures."""

from __future__ import annotations

import math

import numpy as np

WIDTH, HEIGHT = 178, 218

# Shared textures, cut at a random offset per image: much cheaper than fresh noise every time.
_tex_rng = np.random.default_rng(20240601)
NOISE = _tex_rng.standard_normal((3, HEIGHT + 40, WIDTH + 40), dtype=np.float32) * 6  # of 255
_STRANDS = np.cumsum(_tex_rng.standard_normal((HEIGHT + 52, WIDTH + 40), dtype=np.float32), 0)
_STRANDS = (_STRANDS[12:] - _STRANDS[:-12]) / np.float32(math.sqrt(12))  # vertical hair streaks
YS = np.arange(HEIGHT, dtype=np.float32) + 0.5
XS = np.arange(WIDTH, dtype=np.float32) + 0.5


def window(x0: float, x1: float, y0: float, y1: float):
    """Pixel slices and centre coordinates (column, row vectors) of a clipped bounding box."""
    sy = slice(max(int(y0) - 1, 0), min(int(math.ceil(y1)) + 1, HEIGHT))
    sx = slice(max(int(x0) - 1, 0), min(int(math.ceil(x1)) + 1, WIDTH))
    return (sy, sx), YS[sy, None], XS[None, sx]


def paint(img: np.ndarray, win, alpha, colour) -> None:
    """Blend ``colour`` (3 values, or 3 planes) over ``img[:, *win]`` with coverage ``alpha``."""
    region = img[(slice(None), *win)]
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 1:
        colour = colour[:, None, None]
    change = colour - region
    change *= alpha
    region += change


def soft(d):
    """Coverage of a pixel whose centre lies ``d`` px inside an edge (anti-aliasing)."""
    return np.clip(d + 0.5, 0.0, 1.0)


def ellipse_cover(yy, xx, cx, cy, ax, ay, p: float | np.ndarray = 2.0):
    u, v = np.abs(xx - cx) / ax, np.abs(yy - cy) / ay
    if np.isscalar(p) and p in (2.0, 4.0):  # the common cases, without the slow power function
        rho = np.hypot(u, v) if p == 2.0 else np.sqrt(np.hypot(u * u, v * v))
    else:
        rho = (u**p + v**p) ** (1 / p)
    return rho, soft((1 - rho) * np.minimum(ax, ay))


def ellipse(img, cx, cy, ax, ay, colour, alpha=1.0) -> None:
    win, yy, xx = window(cx - ax, cx + ax, cy - ay, cy + ay)
    paint(img, win, ellipse_cover(yy, xx, cx, cy, ax, ay)[1] * alpha, colour)


def ring(img, cx, cy, ax, ay, width, colour) -> None:
    win, yy, xx = window(cx - ax - width, cx + ax + width, cy - ay - width, cy + ay + width)
    rho = np.hypot((xx - cx) / ax, (yy - cy) / ay)
    paint(img, win, soft(width / 2 - np.abs(rho - 1) * math.sqrt(ax * ay)), colour)


def line(img, x0, y0, x1, y1, width, colour, alpha=1.0) -> None:
    win, yy, xx = window(
        min(x0, x1) - width, max(x0, x1) + width, min(y0, y1) - width, max(y0, y1) + width
    )
    dx, dy = x1 - x0, y1 - y0
    along = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    distance = np.hypot(xx - x0 - along * dx, yy - y0 - along * dy)
    paint(img, win, soft(width / 2 - distance) * alpha, colour)


def arc(img, xm, ym, half, bend, width, colour, alpha=1.0) -> None:
    """A stroke along ``y = ym + bend * ((x - xm) / half)**2`` for ``|x - xm| <= half``."""
    low, high = sorted((ym, ym + bend))
    win, yy, xx = window(xm - half, xm + half, low - width, high + width)
    along = ym + bend * ((xx - xm) / half) ** 2
    cover = soft(width / 2 - np.abs(yy - along)) * soft(half - np.abs(xx - xm))
    paint(img, win, cover * alpha, colour)


def hair_texture(rng, colour, win) -> np.ndarray:
    oy, ox = rng.integers(0, 40, 2)
    sy, sx = win
    streaks = _STRANDS[sy.start + oy : sy.stop + oy, sx.start + ox : sx.stop + ox]
    return np.asarray(colour, np.float32)[:, None, None] * (1 + 0.16 * streaks)
