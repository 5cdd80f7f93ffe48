# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Image effects for synthetic text: backgrounds, geometric warps of the text mask, and capture degradations.

Every function draws its randomness from the `numpy.random.Generator` it is given, so a sample is a pure function of
its seed. Images are small (about 32-48 px high), so plain numpy and PIL are fast enough.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

# backgrounds


def _smooth_noise(height: int, width: int, rng: np.random.Generator, cell: float) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random values on a coarse grid, upsampled bicubically."""
    grid = rng.random((max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)))
    image = Image.fromarray((grid * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def _mix(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`first` where weight is 0, `second` where it is 1 (colours `[3]`, weight `[height, width]`)."""
    return first[None, None, :] * (1.0 - weight[..., None]) + second[None, None, :] * weight[..., None]


def background(height: int, width: int, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float32 `[height, width, 3]` background around `color`: plain, gradient, noise or texture."""
    kind = rng.choice(["plain", "gradient", "noise", "texture"], p=[0.35, 0.2, 0.2, 0.25])
    other = np.clip(color + rng.normal(0.0, 40.0, 3), 0, 255).astype(np.float32)
    if kind == "plain":
        return np.broadcast_to(color.astype(np.float32), (height, width, 3)).copy()
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        return _mix(color, other, ramp)
    if kind == "noise":
        blotches = _smooth_noise(height, width, rng, cell=rng.uniform(4, 24))
        grain = rng.normal(0.0, rng.uniform(2, 12), (height, width, 1)).astype(np.float32)
        return _mix(color, other, blotches) + grain
    # texture: paper lines, stripes, a grid, or a marble / wood-like pattern
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pattern = rng.integers(4)
    period = rng.uniform(3, 12)
    if pattern == 0:
        weight = (np.mod(ys + rng.uniform(0, period), period) < 1.0).astype(np.float32)
    elif pattern == 1:
        angle = rng.uniform(0, math.pi)
        weight = 0.5 + 0.5 * np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
    elif pattern == 2:
        weight = ((np.mod(xs, period) < 1.0) | (np.mod(ys, period) < 1.0)).astype(np.float32)
    else:
        turbulence = _smooth_noise(height, width, rng, cell=rng.uniform(6, 20)) * rng.uniform(4, 12)
        weight = 0.5 + 0.5 * np.sin(xs * 2 * math.pi / (period * 3) + turbulence)
    return _mix(color, other, weight * rng.uniform(0.3, 1.0))


def contrasting_color(background_color: np.ndarray, rng: np.random.Generator, min_contrast: float) -> np.ndarray:
    """A text colour whose luminance differs from the background's by at least `min_contrast` (0-255)."""
    weights = np.array([0.299, 0.587, 0.114])
    base = float(background_color @ weights)
    for _ in range(12):
        color = rng.uniform(0, 255, 3)
        if abs(float(color @ weights) - base) >= min_contrast:
            return color.astype(np.float32)
    return np.full(3, 0.0 if base > 127 else 255.0, dtype=np.float32)


# geometric warps of the text mask ("L" images)


def curve(mask: Image.Image, rng: np.random.Generator, max_bend: float) -> Image.Image:
    """Bend the text along an arc or a wave: each column moves vertically by up to `max_bend` pixels."""
    array = np.asarray(mask, dtype=np.float32)
    height, width = array.shape
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    if rng.random() < 0.6:
        shift = max_bend * (xs**2 - 0.5) * rng.choice([-1.0, 1.0])
    else:
        shift = max_bend * 0.6 * np.sin(xs * math.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * math.pi))
    rows = np.arange(height, dtype=np.float32)[:, None] - shift[None, :]  # source row of each output pixel
    low = np.floor(rows)
    frac = rows - low
    low = low.astype(np.int64)
    cols = np.arange(width)[None, :]
    top = array[np.clip(low, 0, height - 1), cols] * ((low >= 0) & (low < height))
    bottom = array[np.clip(low + 1, 0, height - 1), cols] * ((low + 1 >= 0) & (low + 1 < height))
    return Image.fromarray((top * (1 - frac) + bottom * frac).astype(np.uint8))


def _perspective_coefficients(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """Coefficients for `Image.transform(PERSPECTIVE)` that map output corners `target` to input corners
    `source`."""
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend([u, v])
    return np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(values, dtype=np.float64)).tolist()


def perspective(mask: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Move each corner inwards or outwards by up to `strength` × the mask's height (a tilted viewpoint)."""
    width, height = mask.size
    reach = strength * height
    corners = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height)]
    moved = [(x + rng.uniform(-reach, reach), y + rng.uniform(-reach, reach)) for x, y in corners]
    coefficients = _perspective_coefficients(corners, moved)
    return mask.transform(mask.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)


def shear(mask: Image.Image, rng: np.random.Generator, max_shear: float) -> Image.Image:
    """Slant the text horizontally (a fake italic, or a view from the side)."""
    width, height = mask.size
    amount = rng.uniform(-max_shear, max_shear)
    return mask.transform(
        mask.size,
        Image.Transform.AFFINE,
        (1.0, amount, -amount * height / 2, 0.0, 1.0, 0.0),
        Image.Resampling.BILINEAR,
    )


def rotate(mask: Image.Image, angle: float) -> Image.Image:
    """Rotate by `angle` degrees, growing the canvas so nothing is cut."""
    return mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)


# capture degradations of the final RGB image


def gaussian_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.3)))


def motion_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A short horizontal or vertical smear (camera shake)."""
    kernel = [0.0] * 9
    if rng.random() < 0.7:
        kernel[3:6] = [1.0, 1.0, 1.0]
    else:
        kernel[1], kernel[4], kernel[7] = 1.0, 1.0, 1.0
    return image.filter(ImageFilter.Kernel((3, 3), kernel, scale=3))


def add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    sigma = rng.uniform(2.0, 14.0)
    if rng.random() < 0.5:
        noise = rng.normal(0.0, sigma, array.shape[:2])[..., None]  # luminance noise
    else:
        noise = rng.normal(0.0, sigma, array.shape)  # colour noise
    return Image.fromarray(np.clip(array + noise, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Re-encode as a low-quality JPEG (blocking and ringing artefacts)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(10, 60)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def low_resolution(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Capture at a lower resolution and scale back up (soft or blocky strokes)."""
    width, height = image.size
    factor = rng.uniform(1.5, 3.0)
    small = image.resize((max(1, round(width / factor)), max(1, round(height / factor))), Image.Resampling.BILINEAR)
    upsample = Image.Resampling.NEAREST if rng.random() < 0.3 else Image.Resampling.BILINEAR
    return small.resize((width, height), upsample)


__all__ = [
    "add_noise",
    "background",
    "contrasting_color",
    "curve",
    "gaussian_blur",
    "jpeg",
    "low_resolution",
    "motion_blur",
    "perspective",
    "rotate",
    "shear",
]
