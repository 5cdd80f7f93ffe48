# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Augmentation of training crops in the spirit of PARSeq's: RandAugment (a few ops a crop, each at a random
magnitude) over ops that make sense for text, built on torchvision's `transforms.v2.functional` primitives.

PARSeq takes timm's RandAugment ops without the sharpness op, adds Gaussian blur and Poisson noise, and rotates with
`expand=True` so no character is cut. The ops here are the same family, with geometry kept milder (a crop's text
must stay inside it): rotation, shear, perspective, blur, noise, brightness/contrast/saturation/hue jitter,
sharpness, invert, posterize, auto-contrast and equalize. No op changes what the text says.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms.v2 import functional as F

AUGMENT_CHOICES = ("auto", "none", "text")


def _fill(image: Image.Image) -> list[float]:
    """The crop's mean colour: what rotated and warped corners are filled with (black corners are a cue that real
    crops never show)."""
    return [float(v) for v in np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0)]


def _signed(level: float, rng: np.random.Generator) -> float:
    return level if rng.random() < 0.5 else -level


def _rotate(image, level, rng):
    return F.rotate(image, _signed(10.0 * level, rng), F.InterpolationMode.BILINEAR, expand=True, fill=_fill(image))


def _shear(image, level, rng):
    shear_x = math.degrees(math.atan(_signed(0.45 * level, rng)))
    shear_y = math.degrees(math.atan(_signed(0.08 * level, rng))) if rng.random() < 0.3 else 0.0
    return F.affine(
        image,
        angle=0.0,
        translate=[0, 0],
        scale=1.0,
        shear=[shear_x, shear_y],
        interpolation=F.InterpolationMode.BILINEAR,
        fill=_fill(image),
    )


def _perspective(image, level, rng):
    width, height = image.size
    reach = 0.25 * level * height
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    end = [[x + rng.uniform(-reach, reach), y + rng.uniform(-reach, reach) * 0.5] for x, y in start]
    return F.perspective(image, start, end, F.InterpolationMode.BILINEAR, fill=_fill(image))


def _blur(image, level, rng):
    return image.filter(ImageFilter.GaussianBlur(radius=max(0.1, 1.6 * level * image.height / 32)))


def _noise(image, level, rng):
    array = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:  # Poisson (shot) noise, as PARSeq adds
        lam = max(1.0, 40.0 * level)
        noisy = rng.poisson(np.maximum(array, 0) * lam / 255.0) * 255.0 / lam
    else:
        noisy = array + rng.normal(0.0, 25.0 * level, array.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _brightness(image, level, rng):
    return F.adjust_brightness(image, 1.0 + _signed(0.6 * level, rng))


def _contrast(image, level, rng):
    return F.adjust_contrast(image, 1.0 + _signed(0.6 * level, rng))


def _color(image, level, rng):
    image = F.adjust_saturation(image, 1.0 + _signed(0.8 * level, rng))
    return F.adjust_hue(image, _signed(0.25 * level, rng))


def _sharpness(image, level, rng):
    return F.adjust_sharpness(image, 1.0 + _signed(0.9 * level, rng))


def _invert(image, level, rng):
    return F.invert(image)


def _posterize(image, level, rng):
    return F.posterize(image, int(round(8 - 4 * level)))


def _autocontrast(image, level, rng):
    return F.autocontrast(image)


def _equalize(image, level, rng):
    return F.equalize(image)


OPS: dict[str, Callable] = {
    "rotate": _rotate,
    "shear": _shear,
    "perspective": _perspective,
    "blur": _blur,
    "noise": _noise,
    "brightness": _brightness,
    "contrast": _contrast,
    "color": _color,
    "sharpness": _sharpness,
    "invert": _invert,
    "posterize": _posterize,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}


class TextAugment:
    """RandAugment for text crops: each image gets `num_ops` distinct ops (with chance `p`), each at a magnitude
    drawn around `magnitude` (0-10, as in timm's RandAugment; std `magnitude_std`).

    Args:
        num_ops (`int`, defaults to 3): ops applied to one crop (PARSeq uses 3).
        magnitude (`float`, defaults to 5): mean strength, 0-10.
        magnitude_std (`float`, defaults to 0.5): spread of the strength per op.
        p (`float`, defaults to 0.9): chance that a crop is augmented at all.
        ops (`list[str]`, *optional*): names from `OPS` (default: all).
        seed (`int`, *optional*): a fixed seed (tests); by default each process draws its own.

    Example:

    ```python
    >>> from PIL import Image
    >>> from mambaocr_hf.data import TextAugment

    >>> augment = TextAugment(seed=0)
    >>> augment(Image.new("RGB", (100, 32), "white")).mode
    'RGB'
    ```
    """

    def __init__(
        self,
        num_ops: int = 3,
        magnitude: float = 5.0,
        magnitude_std: float = 0.5,
        p: float = 0.9,
        ops: list[str] | None = None,
        seed: int | None = None,
    ):
        ops = list(ops) if ops is not None else list(OPS)
        unknown = [name for name in ops if name not in OPS]
        if unknown:
            raise ValueError(f"Unknown augmentation ops {unknown}: choose from {list(OPS)}.")
        if not 0 <= num_ops <= len(ops):
            raise ValueError(f"`num_ops` must be between 0 and the {len(ops)} ops, got {num_ops}.")
        if not 0.0 <= magnitude <= 10.0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"`magnitude` is 0-10 and `p` a probability, got {magnitude} and {p}.")
        self.ops, self.num_ops, self.magnitude, self.magnitude_std, self.p = ops, num_ops, magnitude, magnitude_std, p
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return (
            f"TextAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, magnitude_std={self.magnitude_std}, "
            f"p={self.p}, ops={self.ops})"
        )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_rng": None, "_pid": None}

    @property
    def rng(self) -> np.random.Generator:
        # each DataLoader worker (a forked or spawned copy) draws its own stream, not its siblings'
        if self._rng is None or self._pid != os.getpid():
            if self.seed is not None:
                entropy = [self.seed]
            else:
                info = torch.utils.data.get_worker_info()
                entropy = [torch.initial_seed() % 2**32, info.id if info is not None else 0]
            self._rng, self._pid = np.random.default_rng(entropy), os.getpid()
        return self._rng

    def __call__(self, image: Image.Image) -> Image.Image:
        rng = self.rng
        if rng.random() >= self.p or not self.num_ops:
            return image
        image = image.convert("RGB")
        for index in rng.choice(len(self.ops), size=self.num_ops, replace=False):
            level = float(np.clip(rng.normal(self.magnitude, self.magnitude_std), 0.0, 10.0)) / 10.0
            image = OPS[self.ops[index]](image, level, rng)
        return image


def resolve_augment(augment: str | TextAugment | None, sources: list[str]) -> TextAugment | None:
    """The training augmentation of a run: `"auto"` augments when any training source holds real crops (anything
    but `"synthetic"`, which renders its own variety), `"text"` always, `"none"` (or `None`) never."""
    if augment is None or isinstance(augment, TextAugment):
        return augment
    if augment not in AUGMENT_CHOICES:
        raise ValueError(f"`augment` must be one of {list(AUGMENT_CHOICES)}, got {augment!r}.")
    if augment == "auto":
        return TextAugment() if any(source != "synthetic" for source in sources) else None
    return TextAugment() if augment == "text" else None


__all__ = ["AUGMENT_CHOICES", "OPS", "TextAugment", "resolve_augment"]
