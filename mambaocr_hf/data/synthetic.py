# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Synthetic scene-text crops rendered on the fly: the default training source, with no download.

A sample is a pure function of `(seed, split, index)`, so any worker can render any index, and the stream is split
into shards of indices (`index % num_shards`) that DataLoader workers and DDP ranks share out without overlap.
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from transformers.utils import logging

from . import effects
from .filters import LabelNormalizer, SampleFilter
from .fonts import FontInfo, find_fonts, is_caseless, missing_characters
from .text_sampler import TextSampler, load_words

logger = logging.get_logger(__name__)


@dataclass
class SyntheticConfig:
    """How synthetic text crops look. Probabilities are per sample.

    Args:
        min_height, max_height: height of the crop in pixels (a warp can make it a little taller). The font size
            is set so that the font's line (ascender to descender) plus the margins fills this height.
        margin: range of each margin around the text, as a fraction of the line height.
        min_contrast: smallest luminance difference between text and background (0-255).
        neutral_background_p: chance of a grey-ish background (white, black, concrete, paper) instead of any colour.
        rotate_p, max_rotation: chance of a rotation and its largest angle in degrees (most are much smaller).
        perspective_p, perspective_strength: chance of a perspective warp and its strength (corner shift / height).
        curve_p, max_bend: chance of a curved baseline and its largest bend (fraction of the height).
        shear_p: chance of a horizontal slant.
        spacing_p: chance of extra or tighter spacing between characters.
        outline_p, shadow_p: chance of an outline of another colour, and of a drop shadow.
        underline_p, border_p: chance of an underline, and of a box around the text.
        blur_p, motion_blur_p, noise_p, jpeg_p, low_resolution_p: chance of each capture degradation.
    """

    min_height: int = 32
    max_height: int = 48
    margin: tuple[float, float] = (0.02, 0.2)
    min_contrast: float = 60.0
    neutral_background_p: float = 0.4
    rotate_p: float = 0.35
    max_rotation: float = 12.0
    perspective_p: float = 0.25
    perspective_strength: float = 0.12
    curve_p: float = 0.1
    max_bend: float = 0.25
    shear_p: float = 0.15
    spacing_p: float = 0.15
    outline_p: float = 0.08
    shadow_p: float = 0.08
    underline_p: float = 0.05
    border_p: float = 0.05
    blur_p: float = 0.25
    motion_blur_p: float = 0.05
    noise_p: float = 0.3
    jpeg_p: float = 0.3
    low_resolution_p: float = 0.15

    def __post_init__(self):
        if not 4 <= self.min_height <= self.max_height:
            raise ValueError(f"Need 4 <= min_height <= max_height, got {self.min_height} and {self.max_height}.")
        self.margin = tuple(self.margin)


def synthetic_config_from(value: str | None) -> SyntheticConfig | None:
    """A `SyntheticConfig` from JSON text or a JSON file; a training preset's `synthetic_config` entry is used when the
    file has one (so `scripts/configs/demo_cpu.json` gives the demo's distribution). `None` gives `None`."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as handle:
            loaded = json.load(handle)
        loaded = loaded.get("synthetic_config", loaded)
    else:
        loaded = json.loads(value)
    return SyntheticConfig(**loaded)


def _split_code(split: str | None) -> list[int]:
    """Seed entropy of a split: none for the training split, a stable hash otherwise (so splits never overlap)."""
    if split in (None, "train"):
        return []
    return [zlib.crc32(str(split).encode("utf-8"))]


def _variation_axes(path: str) -> list[tuple[int, int]]:
    """`(minimum, maximum)` of each variation axis of a variable font (weight, width, ...); `[]` for a static one."""
    try:
        axes = ImageFont.truetype(path, 16).get_variation_axes()
    except OSError:
        return []
    return [(int(axis["minimum"]), int(axis["maximum"])) for axis in axes]


def _line_ratio(path: str) -> float:
    """The font's line height (ascender + descender) per unit of font size."""
    return max(0.5, sum(ImageFont.truetype(path, 100).getmetrics()) / 100)


class SyntheticTextGenerator:
    """Renders word images with their labels, deterministically from `(seed, split, index)`.

    Text comes from a word list plus random alphanumerics, numbers, dates, prices and punctuation, restricted to the
    characters the tokenizer's charset can label (`TextSampler`). Fonts (serif, sans, mono, handwriting and display
    faces, balanced by category) come from `font_dirs`, the system's font folders and the project's font packages.
    Backgrounds are plain, gradient, noise or texture; the text may be rotated, warped in perspective, curved,
    slanted, outlined, shadowed, underlined or boxed; the crop may be blurred, noisy, JPEG-compressed or captured at
    a low resolution.

    Args:
        tokenizer (`MambaOCRTokenizer`, *optional*): its charset restricts the text (and its `char_map` folds it).
            Defaults to `MambaOCRTokenizer()` (36 lower-case alphanumerics; images still show both cases).
        charset (`str`, *optional*): a charset instead of a tokenizer (name or characters).
        seed (`int`, defaults to 0): the dataset seed.
        split (`str`, *optional*): other splits than `"train"` get different samples for the same seed.
        font_dirs: extra font folders or files.
        use_system_fonts, use_package_fonts: also use system fonts / the project's font packages.
        words: a word list file, the words, or `None` for the default English list.
        max_length (`int`, defaults to 25): longest label.
        config (`SyntheticConfig`, *optional*): rendering and augmentation settings.

    Example:

    ```python
    >>> from mambaocr_hf.data import SyntheticTextGenerator

    >>> generator = SyntheticTextGenerator(seed=0)
    >>> sample = generator[7]
    >>> sample["image"].height >= 16, sample["text"] == generator[7]["text"]
    (True, True)
    ```
    """

    def __init__(
        self,
        tokenizer=None,
        charset: str | None = None,
        seed: int = 0,
        split: str | None = None,
        font_dirs: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
        use_system_fonts: bool = True,
        use_package_fonts: bool = True,
        words: str | os.PathLike | Sequence[str] | None = None,
        max_length: int = 25,
        config: SyntheticConfig | None = None,
    ):
        if tokenizer is None:
            from ..tokenization_mambaocr import MambaOCRTokenizer

            tokenizer = MambaOCRTokenizer(charset=charset) if charset is not None else MambaOCRTokenizer()
        elif charset is not None:
            raise ValueError("Pass either `tokenizer` or `charset`, not both.")
        self.normalizer = LabelNormalizer.from_tokenizer(tokenizer, "map")
        self.seed = int(seed)
        self.split = split
        self.config = config or SyntheticConfig()
        self.max_length = max_length
        self.sampler = TextSampler(self.normalizer.charset, self.normalizer.fold, load_words(words), max_length)
        fonts = find_fonts(font_dirs, use_system_fonts, use_package_fonts, required_characters="")
        # a font must draw every letter and digit; rarer characters are checked per sample (`_pick_font`)
        self.fonts = [font for font in fonts if not missing_characters(font.path, self.sampler.alphanumerics)]
        if not self.fonts:
            raise ValueError(
                "No usable font found: pass `font_dirs` with .ttf/.otf files, or install the project's font packages "
                "(`pip install mambaocr-hf` brings them)."
            )
        self._caseless = {font.path: is_caseless(font.path) for font in self.fonts}
        self._axes = {font.path: _variation_axes(font.path) for font in self.fonts}
        self._line_ratio = {font.path: _line_ratio(font.path) for font in self.fonts}
        self._font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
        self._by_category: dict[str, dict[str, list[FontInfo]]] = {}
        for font in self.fonts:
            self._by_category.setdefault(font.category, {}).setdefault(font.family, []).append(font)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_font_cache": {}}

    @property
    def num_fonts(self) -> int:
        return len(self.fonts)

    def describe(self) -> dict:
        """What the generator draws from (for logs and model cards)."""
        return {
            "seed": self.seed,
            "split": self.split,
            "charset": self.normalizer.charset,
            "drawable_characters": self.sampler.drawable,
            "num_words": len(self.sampler.words),
            "num_fonts": self.num_fonts,
            "fonts_by_category": {key: sum(map(len, value.values())) for key, value in self._by_category.items()},
            "config": asdict(self.config),
        }

    # rendering

    def _font(self, path: str, size: int) -> ImageFont.FreeTypeFont:
        key = (path, size)
        font = self._font_cache.get(key)
        if font is None:
            if len(self._font_cache) > 2048:
                self._font_cache.clear()
            font = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
            self._font_cache[key] = font
        return font

    def _pick_font(self, text: str, rng: np.random.Generator) -> FontInfo:
        """A font that draws every character of `text`: category, then family, then file, each uniformly."""
        categories = sorted(self._by_category)
        for _ in range(8):
            families = self._by_category[categories[rng.integers(len(categories))]]
            names = sorted(families)
            files = families[names[rng.integers(len(names))]]
            font = files[rng.integers(len(files))]
            if not missing_characters(font.path, text):
                return font
        usable = [font for font in self.fonts if not missing_characters(font.path, text)]
        return (usable or self.fonts)[rng.integers(len(usable or self.fonts))]

    def _draw_mask(
        self, text: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator, stroke: int
    ) -> tuple[Image.Image, Image.Image | None, tuple[int, int]]:
        """The text as an "L" mask on a padded canvas, an outline mask (or `None`), and how far the font's line
        reaches above and below the ink."""
        config = self.config
        spacing = 0.0
        if rng.random() < config.spacing_p and len(text) > 1:
            spacing = rng.uniform(-0.08, 0.35) * font.size
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
        width = right - left + max(0, math.ceil(spacing * (len(text) - 1)))
        height = bottom - top
        pad = max(4, int(0.35 * height)) + stroke
        size = (width + 2 * pad, height + 2 * pad)
        mask = Image.new("L", size, 0)
        outline = Image.new("L", size, 0) if stroke else None
        origin = (pad - left, pad - top)
        draws = [(ImageDraw.Draw(mask), 0)] + ([(ImageDraw.Draw(outline), stroke)] if outline else [])
        for draw, width_of_stroke in draws:
            if spacing:
                x = float(origin[0])
                for char in text:
                    draw.text((x, origin[1]), char, font=font, fill=255, stroke_width=width_of_stroke)
                    x += font.getlength(char) + spacing
            else:
                draw.text(origin, text, font=font, fill=255, stroke_width=width_of_stroke)
        box = (pad, pad, pad + width, pad + height)
        ascent, descent = font.getmetrics()
        line_extents = (max(0, top), max(0, ascent + descent - bottom))  # `top`, `bottom` are from the ascender line
        decorated = [image for image in (mask, outline) if image is not None]
        if rng.random() < config.underline_p:
            y = min(box[3] + max(1, height // 12), size[1] - 1)
            for image in decorated:
                ImageDraw.Draw(image).line(
                    [(box[0], y), (box[2], y)], fill=255, width=max(1, round(height / 14)) + stroke
                )
        if rng.random() < config.border_p:
            margin = max(2, height // 6)
            rectangle = [(box[0] - margin, box[1] - margin), (box[2] + margin, box[3] + margin)]
            for image in decorated:
                ImageDraw.Draw(image).rectangle(rectangle, outline=255, width=max(1, round(height / 16)) + stroke)
        return mask, outline, line_extents

    def _warp(self, masks: list[Image.Image], rng: np.random.Generator) -> list[Image.Image]:
        """The same random geometric warps applied to each mask."""
        config = self.config
        steps = []
        if rng.random() < config.curve_p:
            steps.append(("curve", int(rng.integers(2**32))))
        if rng.random() < config.shear_p:
            steps.append(("shear", int(rng.integers(2**32))))
        if rng.random() < config.perspective_p:
            steps.append(("perspective", int(rng.integers(2**32))))
        if rng.random() < config.rotate_p:
            angle = float(np.clip(rng.normal(0.0, config.max_rotation / 3), -config.max_rotation, config.max_rotation))
            steps.append(("rotate", angle))
        warped = []
        for mask in masks:
            for name, value in steps:
                if name == "rotate":
                    mask = effects.rotate(mask, value)
                    continue
                step_rng = np.random.default_rng(value)  # same warp for the text and its outline
                if name == "curve":
                    mask = effects.curve(mask, step_rng, config.max_bend * mask.height * 0.5)
                elif name == "shear":
                    mask = effects.shear(mask, step_rng, 0.3)
                else:
                    mask = effects.perspective(mask, step_rng, config.perspective_strength)
            warped.append(mask)
        return warped

    def _paint(self, mask: Image.Image, outline: Image.Image | None, rng: np.random.Generator) -> Image.Image:
        """Colour the text (and its outline and shadow) over a background."""
        config = self.config
        width, height = mask.size
        if rng.random() < config.neutral_background_p:
            background_color = np.clip(rng.uniform(0, 255) + rng.normal(0, 10, 3), 0, 255).astype(np.float32)
        else:
            background_color = rng.uniform(0, 255, 3).astype(np.float32)
        image = effects.background(height, width, background_color, rng)
        text_color = effects.contrasting_color(background_color, rng, config.min_contrast)
        if rng.random() < config.shadow_p:
            offset = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            shadow = Image.new("L", mask.size, 0)
            shadow.paste(mask, offset)
            alpha = np.asarray(shadow, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.4, 0.8)
            image = image * (1 - alpha) + (background_color * 0.3)[None, None, :] * alpha
        if outline is not None:
            outline_color = effects.contrasting_color(text_color, rng, config.min_contrast)
            alpha = np.asarray(outline, dtype=np.float32)[..., None] / 255.0
            image = image * (1 - alpha) + outline_color[None, None, :] * alpha
        alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        image = image * (1 - alpha) + text_color[None, None, :] * alpha
        return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")

    def _degrade(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Capture degradations: low resolution, blur, noise, JPEG."""
        config = self.config
        if rng.random() < config.low_resolution_p:
            image = effects.low_resolution(image, rng)
        if rng.random() < config.blur_p:
            image = effects.gaussian_blur(image, rng)
        elif rng.random() < config.motion_blur_p:
            image = effects.motion_blur(image, rng)
        if rng.random() < config.noise_p:
            image = effects.add_noise(image, rng)
        if rng.random() < config.jpeg_p:
            image = effects.jpeg(image, rng)
        return image

    def render(self, index: int) -> tuple[Image.Image, str]:
        """The RGB image and label of sample `index`."""
        if index < 0:
            raise IndexError(f"Sample indices are non-negative, got {index}.")
        rng = np.random.default_rng([self.seed, int(index), *_split_code(self.split)])
        config = self.config
        text, label = self.sampler.sample(rng)
        info = self._pick_font(text, rng)
        if self._caseless[info.path] and text.upper() != text and self.sampler.can_draw(text.upper()):
            text = text.upper()  # an all-caps font draws capitals whatever it is given: say so in the label
            label = self.sampler.label(text)
        target_height = int(rng.integers(config.min_height, config.max_height + 1))
        margins = rng.uniform(*config.margin, size=4)  # left, top, right, bottom
        size = round(target_height / (self._line_ratio[info.path] * (1 + margins[1] + margins[3])))
        font = self._font(info.path, max(6, size))
        axes = self._axes[info.path]
        if axes:  # variable font: a random weight (and width, where it has one), within the font's range
            font.set_variation_by_axes([int(rng.integers(low, high + 1)) for low, high in axes])
        stroke = int(rng.integers(1, 3)) if rng.random() < config.outline_p else 0
        mask, outline, (above, below) = self._draw_mask(text, font, rng, stroke)
        masks = self._warp([mask] + ([outline] if outline is not None else []), rng)
        mask, outline = masks[0], (masks[1] if len(masks) > 1 else None)
        ink = (outline if outline is not None else mask).getbbox()
        if ink is None:  # the text vanished (an empty glyph): fall back to the unwarped mask
            ink = mask.getbbox() or (0, 0, mask.width, mask.height)
        left, top, right, bottom = ink
        # crop the whole line (ascender to descender), not just the ink, as a text detector would box a word
        line_height = sum(font.getmetrics()) + 2 * stroke
        crop = (
            left - round(margins[0] * line_height),
            top - above - round(margins[1] * line_height),
            right + round(margins[2] * line_height),
            bottom + below + round(margins[3] * line_height),
        )
        mask = mask.crop(crop)
        outline = outline.crop(crop) if outline is not None else None
        image = self._paint(mask, outline, rng)
        return self._degrade(image, rng), label

    def __getitem__(self, index: int) -> dict:
        image, text = self.render(index)
        return {"image": image, "text": text}

    def encode(self, index: int, image_format: str = "png") -> tuple[bytes, str]:
        """Sample `index` as encoded image bytes (`"png"`, or `"jpg"` at quality 95) and its label."""
        image, text = self.render(index)
        return encode_image(image, image_format), text

    def indices(self, shard: int, num_shards: int, num_samples: int | None = None) -> Iterator[int]:
        """The sample indices of one shard: `shard`, `shard + num_shards`, ... (below `num_samples` if given)."""
        index = shard
        while num_samples is None or index < num_samples:
            yield index
            index += num_shards


def encode_image(image: Image.Image, image_format: str = "png") -> bytes:
    """`image` as `"png"` bytes (zlib level 1: a third of PIL's default time for the same size on text crops),
    `"jpg"` at quality 95, or uncompressed `"bmp"` (a tenth of the PNG round trip's time, ~20% larger: for bytes
    that are decoded at once and never stored)."""
    buffer = io.BytesIO()
    if image_format.lower() in ("jpg", "jpeg"):
        image.save(buffer, format="JPEG", quality=95)
    elif image_format.lower() == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif image_format.lower() == "bmp":
        image.save(buffer, format="BMP")
    else:
        raise ValueError(f"`image_format` must be 'png', 'jpg' or 'bmp', got {image_format!r}.")
    return buffer.getvalue()


def synthetic_examples(
    shards: list[int],
    num_shards: int,
    num_samples: int | None,
    generator: SyntheticTextGenerator,
    sample_filter: SampleFilter,
    image_format: str = "png",
):
    """`datasets` generator: the samples of each shard (indices `shard + k * num_shards`, below `num_samples`).

    Labels are already in the charset; the filter only drops the rare render whose label CTC could not align.
    Images travel as `image_format` bytes (lossless `"png"` or `"bmp"`: the pixels are the same either way).
    """
    for shard in shards:
        for index in generator.indices(shard, num_shards, num_samples):
            image, text = generator.render(index)
            text = sample_filter.check_decoded(text, image.size, where=f"synthetic sample {index}")
            if text is not None:
                # `datasets` would PNG-encode the image itself, at its default (slower) compression level
                yield {"image": {"bytes": encode_image(image, image_format), "path": None}, "text": text}


__all__ = ["SyntheticConfig", "SyntheticTextGenerator", "encode_image", "synthetic_examples"]
