# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Long text lines to test and measure long-line recognition: text lines rendered by the synthetic generator
(`render_text_line`), or synthetic word crops placed side by side (`render_long_line`, for charsets without the
space)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..image_processing_mambaocr import INFERENCE_MAX_WIDTH
from .synthetic import SyntheticTextGenerator


def fit_line(image: Image.Image, height: int = 32, max_width: int | None = INFERENCE_MAX_WIDTH) -> Image.Image:
    """`image` resized to `height` (aspect kept) and, with `max_width`, squeezed horizontally to that width when
    wider, as the image processor would."""
    width = max(1, round(image.width * height / image.height))
    if max_width is not None:
        width = min(width, max_width)
    return image.resize((width, height), Image.BILINEAR)


def render_text_line(
    generator: SyntheticTextGenerator, index: int, height: int = 32, max_width: int | None = INFERENCE_MAX_WIDTH
) -> tuple[Image.Image, str]:
    """Sample `index` of `generator` as a text line (`generator.config.line_chars` characters, drawn as one string
    with spaces, whatever its `line_p`), fitted to `height` and `max_width` (`fit_line`)."""
    image, text = generator.render(index, line=True)
    return fit_line(image.convert("RGB"), height, max_width), text


def render_long_line(
    generator: SyntheticTextGenerator,
    index: int,
    min_chars: int = 200,
    height: int = 32,
    max_width: int | None = INFERENCE_MAX_WIDTH,
    gap: tuple[int, int] = (4, 14),
) -> tuple[Image.Image, str]:
    """A line of at least `min_chars` label characters: word crops of `generator` (from index `index * 1000` on,
    resized to `height`) placed left to right on a light background with random gaps. The label is the words'
    labels joined without separators (the default charset has no space).

    With `max_width`, a line wider than that is squeezed horizontally to fit (the image processor would do the same);
    `None` keeps the natural width. Deterministic for `(generator, index)`.
    """
    if min_chars < 1:
        raise ValueError(f"`min_chars` must be at least 1, got {min_chars}.")
    rng = np.random.default_rng([generator.seed, int(index), 7])
    crops, labels, length = [], [], 0
    sample = int(index) * 1000
    while length < min_chars:
        image, label = generator.render(sample)
        sample += 1
        image = image.convert("RGB")
        crops.append(image.resize((max(1, round(image.width * height / image.height)), height), Image.BILINEAR))
        labels.append(label)
        length += len(label)
    gaps = rng.integers(gap[0], gap[1] + 1, size=len(crops))
    width = int(sum(crop.width for crop in crops) + gaps.sum())
    line = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 256, size=3)))
    x = int(gaps[0]) // 2
    for crop, space in zip(crops, gaps):
        line.paste(crop, (x, 0))
        x += crop.width + int(space)
    if max_width is not None and line.width > max_width:
        line = line.resize((max_width, height), Image.BILINEAR)
    return line, "".join(labels)


__all__ = ["fit_line", "render_long_line", "render_text_line"]
