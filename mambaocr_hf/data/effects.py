# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Image effects for synthetic text: geometric warps of the text mask, blending, and capture degradations
(backgrounds are in `backgrounds.py`).

Every function draws its randomness from the `numpy.random.Generator` it is given, so a sample is a pure function of
its seed. Images are small (about 32-48 px high), so plain numpy and PIL are fast enough.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageFilter

from .backgrounds import smooth_noise


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


def defocus_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An out-of-focus capture: a wider blur than `gaussian_blur`, relative to the crop's height."""
    return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.025, 0.055) * image.height))


def directional_motion_blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Camera or subject motion: the image averaged along a line of 3-9 px at any angle."""
    array = np.asarray(image, dtype=np.float32)
    length = int(rng.integers(3, 10))
    angle = rng.uniform(0, math.pi) if rng.random() < 0.5 else rng.normal(0, 0.2)
    total = np.zeros_like(array)
    padded = np.pad(array, ((length, length), (length, length), (0, 0)), mode="edge")
    height, width = array.shape[:2]
    for step in np.linspace(-(length - 1) / 2, (length - 1) / 2, length):
        dy, dx = round(step * math.sin(angle)), round(step * math.cos(angle))
        total += padded[length + dy : length + dy + height, length + dx : length + dx + width]
    return Image.fromarray(np.clip(total / length, 0, 255).astype(np.uint8))


def small_text(image: Image.Image, rng: np.random.Generator, text_height: tuple[int, int] = (6, 16)) -> Image.Image:
    """Text captured only 6-16 px high (as incidental text is), then upsampled back to the crop's size."""
    width, height = image.size
    low, high = text_height
    target = (
        low + (high - low) * rng.random() ** 0.7
    ) / 0.75  # the text fills about three quarters of the crop's height
    factor = height / target
    if factor <= 1.05:
        return image
    small = image.resize((max(1, round(width / factor)), max(1, round(height / factor))), Image.Resampling.BOX)
    upsample = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST][
        int(rng.choice(3, p=[0.5, 0.4, 0.1]))
    ]
    return small.resize((width, height), upsample)


def lighting(image: Image.Image, rng: np.random.Generator, highlight_p: float = 0.3) -> Image.Image:
    """Uneven light: a smooth or linear shading field, and sometimes a specular highlight."""
    array = np.asarray(image, dtype=np.float32)
    height, width = array.shape[:2]
    if rng.random() < 0.5:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        field = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    else:
        field = smooth_noise(height, width, rng, rng.uniform(10, 40))
    low = rng.uniform(0.55, 0.9)
    array = array * (low + (1.0 - low) * field)[..., None] * rng.uniform(1.0, 1.25)
    if rng.random() < highlight_p:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.3, 1.2) * height
        blob = np.exp(-((ys - cy) ** 2 + ((xs - cx) * rng.uniform(0.3, 1.0)) ** 2) / (2 * radius**2))
        array = array + blob[..., None] * rng.uniform(40, 140)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def compress_contrast(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Faded or hazy capture: pixel values pulled toward their mean (and the mean shifted a little)."""
    array = np.asarray(image, dtype=np.float32)
    mean = array.mean()
    scale = rng.uniform(0.45, 0.85)
    shift = rng.normal(0, 15)
    return Image.fromarray(np.clip(mean + shift + (array - mean) * scale, 0, 255).astype(np.uint8))


def color_cast(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A white-balance error or tinted light: each channel scaled by its own gain."""
    array = np.asarray(image, dtype=np.float32) * rng.uniform(0.75, 1.25, 3).astype(np.float32)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def sensor_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shot noise that grows with brightness, plus read noise (a camera sensor in low light)."""
    array = np.asarray(image, dtype=np.float32)
    gain = rng.uniform(0.5, 4.0)
    shot = rng.normal(0.0, 1.0, array.shape).astype(np.float32) * np.sqrt(np.maximum(array, 0) * gain)
    read = rng.normal(0.0, rng.uniform(1, 6), array.shape[:2])[..., None].astype(np.float32)
    return Image.fromarray(np.clip(array + shot + read, 0, 255).astype(np.uint8))


def squeeze(image: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = (0.7, 1.4)) -> Image.Image:
    """Squeeze or stretch vertically (detectors' boxes and perspective change a word's aspect)."""
    width, height = image.size
    factor = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
    return image.resize((width, max(8, round(height * factor))), Image.Resampling.BILINEAR)


__all__ = [
    "add_noise",
    "color_cast",
    "compress_contrast",
    "contrasting_color",
    "curve",
    "defocus_blur",
    "directional_motion_blur",
    "gaussian_blur",
    "lighting",
    "jpeg",
    "low_resolution",
    "motion_blur",
    "perspective",
    "rotate",
    "sensor_noise",
    "shear",
    "small_text",
    "squeeze",
]
