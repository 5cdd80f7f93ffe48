# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Backgrounds for synthetic text: patches of the user's own photographs, or procedural textures.

MJSynth and SynthText blend their words with patches of natural images; a user gives a folder of photos through
`SyntheticConfig.background_dirs`. Without one, procedural surfaces stand in: gradients, fractal noise, wood, stone,
fabric, brick, paper and painted metal, each with lighting. Every function draws its randomness from the
`numpy.random.Generator` it is given, so a sample stays a pure function of its seed.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from transformers.utils import logging

logger = logging.get_logger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MIN_BACKGROUND_SIDE = 48  # a photo smaller than this on either side is skipped (too small to take patches from)
_MAX_SIDE = 512  # photos are kept downscaled to at most this many pixels on their longer side
PROCEDURAL_KINDS = ("plain", "gradient", "fractal", "wood", "stone", "fabric", "brick", "paper", "metal")


def smooth_noise(height: int, width: int, rng: np.random.Generator, cell: float) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random values on a coarse grid, upsampled bicubically."""
    grid = rng.random((max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)))
    image = Image.fromarray((grid * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def fractal_noise(height: int, width: int, rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    """Multi-octave value noise in [0, 1] (coarse blotches with finer detail on top)."""
    total = np.zeros((height, width), dtype=np.float32)
    cell, amplitude, weight = rng.uniform(16, 48), 1.0, 0.0
    for _ in range(octaves):
        total += amplitude * smooth_noise(height, width, rng, max(1.5, cell))
        weight += amplitude
        cell, amplitude = cell / 2, amplitude * rng.uniform(0.4, 0.65)
    return total / weight


def _mix(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`first` where weight is 0, `second` where it is 1 (colours `[3]`, weight `[height, width]`)."""
    return first[None, None, :] * (1.0 - weight[..., None]) + second[None, None, :] * weight[..., None]


def _surface_color(rng: np.random.Generator) -> np.ndarray:
    """A colour surfaces in scenes have: often grey or muted, sometimes painted and saturated."""
    if rng.random() < 0.45:
        return np.clip(rng.uniform(0, 255) + rng.normal(0, 10, 3), 0, 255).astype(np.float32)
    hue = rng.random()
    saturation = rng.uniform(0.15, 1.0) if rng.random() < 0.5 else rng.uniform(0.0, 0.35)
    value = rng.uniform(0.15, 1.0)
    return hsv_to_rgb(hue, saturation, value)


def hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    sector = int(hue * 6) % 6
    fraction = hue * 6 - int(hue * 6)
    p, q, t = value * (1 - saturation), value * (1 - fraction * saturation), value * (1 - (1 - fraction) * saturation)
    rgb = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)][sector]
    return (np.array(rgb, dtype=np.float32) * 255.0).astype(np.float32)


def procedural_background(height: int, width: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A float32 `[height, width, 3]` procedural surface (see `PROCEDURAL_KINDS`)."""
    kind = kind or PROCEDURAL_KINDS[rng.integers(len(PROCEDURAL_KINDS))]
    color = _surface_color(rng)
    other = np.clip(color + rng.normal(0.0, 45.0, 3), 0, 255).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "plain":
        image = np.broadcast_to(color, (height, width, 3)).copy()
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        image = _mix(color, other, ramp)
    elif kind == "fractal":
        image = _mix(color, other, fractal_noise(height, width, rng))
    elif kind == "wood":
        warp = fractal_noise(height, width, rng, 3) * rng.uniform(3, 9)
        rings = np.sin((ys * rng.uniform(0.3, 1.2) + warp * 6) * rng.uniform(0.4, 1.0))
        grain = rng.normal(0, 1, (1, width)).astype(np.float32) * 0.15
        image = _mix(color, other * 0.7, 0.5 + 0.4 * rings + grain)
    elif kind == "stone":
        blotches = fractal_noise(height, width, rng, 5)
        speckle = (rng.random((height, width)) < rng.uniform(0.01, 0.06)).astype(np.float32)
        image = _mix(color, other, blotches) - speckle[..., None] * rng.uniform(20, 60)
    elif kind == "fabric":
        period = rng.uniform(2, 5)
        weave = 0.5 + 0.25 * np.sin(xs * 2 * math.pi / period) + 0.25 * np.sin(ys * 2 * math.pi / period)
        image = _mix(color, other, weave * rng.uniform(0.3, 0.8))
    elif kind == "brick":
        brick_h, brick_w = rng.uniform(8, 20), rng.uniform(20, 48)
        row = np.floor(ys / brick_h)
        shifted = xs + (row % 2) * brick_w / 2
        mortar = (np.mod(ys, brick_h) < 1.5) | (np.mod(shifted, brick_w) < 1.5)
        mortar_color = np.clip(color * 0.4 + 140, 0, 255)
        tone = smooth_noise(height, width, rng, brick_w) * 0.3
        image = _mix(color, other, tone)
        image[mortar] = mortar_color
    elif kind == "paper":
        fibres = smooth_noise(height, width, rng, rng.uniform(1.5, 3)) * 0.15
        light = np.clip(color * 0.3 + 170, 0, 255).astype(np.float32)
        image = _mix(light, light * 0.85, fibres + fractal_noise(height, width, rng, 2) * 0.3)
    elif kind == "metal":
        brushed = rng.normal(0, 1, (height, 1)).astype(np.float32) * 0.08 + np.zeros((1, width), np.float32)
        sheen = np.exp(-(((xs / max(width, 1)) - rng.uniform(0, 1)) ** 2) / rng.uniform(0.02, 0.2))
        image = _mix(color, np.clip(color + 70, 0, 255), np.clip(0.35 * sheen + brushed + 0.2, 0, 1))
    else:
        raise ValueError(f"Unknown background kind {kind!r}: expected one of {list(PROCEDURAL_KINDS)}.")
    grain = rng.normal(0.0, rng.uniform(0.5, 6), (height, width, 1)).astype(np.float32)
    return np.clip(image + grain, 0, 255).astype(np.float32)


class PhotoBackgrounds:
    """Patches of the photographs in `background_dirs` (searched recursively).

    The files are checked when the object is made (header and size only): unreadable files and images smaller than
    `MIN_BACKGROUND_SIDE` pixels are skipped and counted (`skipped`), and a folder with no usable photo is an error
    naming it. Pixels are decoded on first use, downscaled to at most 512 px, and kept; a pickled copy (what a
    DataLoader worker gets) carries the file list only.
    """

    def __init__(self, background_dirs: Sequence[str | os.PathLike] | str | os.PathLike):
        if isinstance(background_dirs, (str, os.PathLike)):
            background_dirs = [background_dirs]
        self.dirs = [os.fspath(folder) for folder in background_dirs]
        self.skipped: Counter[str] = Counter()
        self.files: list[str] = []
        for folder in self.dirs:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"Background folder {folder!r} does not exist (or is not a folder).")
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            usable = [str(file) for file in files if self._usable(file)]
            if not usable:
                raise ValueError(
                    f"Background folder {folder!r} holds no usable photo ({len(files)} image files; skipped so far: "
                    f"{dict(self.skipped) or 'none'}): give a folder of photos at least {MIN_BACKGROUND_SIDE}x"
                    f"{MIN_BACKGROUND_SIDE} px (.jpg, .png, ...), or leave background_dirs unset for procedural "
                    "textures."
                )
            self.files.extend(usable)
        if self.skipped:
            logger.warning(f"Background photos: using {len(self.files)}, skipped {dict(self.skipped)}.")
        self._pixels: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": {}}

    def _usable(self, file: Path) -> bool:
        try:
            with Image.open(file) as opened:
                width, height = opened.size
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
            logger.debug(f"Skipping background {file}: {error}")
            self.skipped["unreadable"] += 1
            return False
        if min(width, height) < MIN_BACKGROUND_SIDE:
            self.skipped["too_small"] += 1
            return False
        return True

    def _photo(self, index: int) -> np.ndarray:
        photo = self._pixels.get(index)
        if photo is None:
            try:
                with Image.open(self.files[index]) as opened:
                    opened.draft("RGB", (_MAX_SIDE, _MAX_SIDE))  # JPEG: decode at a reduced scale, much faster
                    image = opened.convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as error:  # truncated after the header
                logger.warning(f"Background {self.files[index]} cannot be decoded ({error}); using a texture.")
                image = Image.fromarray(procedural_background(64, 64, np.random.default_rng(index)).astype(np.uint8))
            scale = _MAX_SIDE / max(image.size)
            if scale < 1:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image = image.resize(size, Image.Resampling.BILINEAR)
            photo = self._pixels[index] = np.asarray(image)
        return photo

    def __len__(self) -> int:
        return len(self.files)

    def patch(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """A float32 `[height, width, 3]` patch of a random photo at a random place and scale (flipped at random)."""
        photo = self._photo(int(rng.integers(len(self.files))))
        photo_h, photo_w = photo.shape[:2]
        # a patch as tall as 1/8 to 1/2 of the photo, wide enough for the crop's aspect (clamped to the photo)
        patch_h = int(np.clip(photo_h * rng.uniform(0.12, 0.5), 8, photo_h))
        patch_w = int(np.clip(patch_h * width / height, 8, photo_w))
        patch_h = int(np.clip(patch_w * height / width, 4, photo_h))
        top = int(rng.integers(0, photo_h - patch_h + 1))
        left = int(rng.integers(0, photo_w - patch_w + 1))
        region = Image.fromarray(photo[top : top + patch_h, left : left + patch_w])
        if rng.random() < 0.5:
            region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        region = region.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(region, dtype=np.float32)


def luminance(colors: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of `[..., 3]` RGB values (0-255)."""
    return colors @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


_SIGN_COLORS = np.array(
    [
        [250, 250, 250],
        [20, 20, 20],
        [200, 30, 30],
        [250, 200, 20],
        [20, 60, 160],
        [20, 120, 60],
        [240, 120, 20],
        [120, 120, 120],
    ],
    dtype=np.float32,
)


def text_color(background: np.ndarray, mask: np.ndarray, rng: np.random.Generator, min_contrast: float) -> np.ndarray:
    """A text colour the way scenes have them: a colour of the background's own palette or a common sign colour,
    moved in lightness until it differs from the background behind the text by at least `min_contrast` (0-255).

    Args:
        background: float32 `[height, width, 3]`.
        mask: float32 `[height, width]` in [0, 1], where the text will be.
    """
    weight = mask.sum()
    behind = (background * mask[..., None]).sum((0, 1)) / weight if weight > 0 else background.mean((0, 1))
    base = float(luminance(behind))
    if rng.random() < 0.35:
        candidate = _SIGN_COLORS[rng.integers(len(_SIGN_COLORS))] + rng.normal(0, 12, 3)
    else:  # a pixel of the background, as a palette of the scene
        flat = background.reshape(-1, 3)
        candidate = flat[rng.integers(len(flat))] + rng.normal(0, 20, 3)
    candidate = np.clip(candidate, 0, 255).astype(np.float32)
    contrast = rng.uniform(min_contrast, max(min_contrast, 200.0))
    lighter = base < 128 if rng.random() < 0.8 else base >= 128  # mostly the side with more room
    direction = 1.0 if lighter else -1.0
    for sign in (direction, -direction):
        target = base + sign * contrast
        if 0 <= target <= 255:
            break
    else:
        target = 255.0 if base < 128 else 0.0
    # move the candidate toward white or black until its luma reaches the target, keeping its hue
    current = float(luminance(candidate))
    if target > current:
        fraction = (target - current) / max(255.0 - current, 1e-3)
        color = candidate + (255.0 - candidate) * min(fraction, 1.0)
    else:
        fraction = (current - target) / max(current, 1e-3)
        color = candidate * (1.0 - min(fraction, 1.0))
    return np.clip(color, 0, 255).astype(np.float32)


__all__ = [
    "PROCEDURAL_KINDS",
    "PhotoBackgrounds",
    "fractal_noise",
    "luminance",
    "procedural_background",
    "smooth_noise",
    "text_color",
]
