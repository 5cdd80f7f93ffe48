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
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from transformers.utils import logging

from ..presets import EXTENDS_KEY, load_preset
from . import effects
from .backgrounds import PhotoBackgrounds, luminance, procedural_background, text_color
from .filters import LabelNormalizer, SampleFilter
from .fonts import CATEGORIES, FontInfo, font_profile, missing_characters, scan_fonts
from .text_sampler import (
    SCENE_TEXT_WORD_LENGTHS,
    TEXT_KINDS,
    WORD_CASES,
    TextSampler,
    check_weights,
    length_weights,
    load_words,
)

logger = logging.get_logger(__name__)


_DEFAULT_CATEGORY_WEIGHTS = {
    "sans_serif": 0.30,
    "condensed": 0.15,
    "display": 0.20,
    "serif": 0.16,
    "monospace": 0.07,
    "handwriting": 0.12,
}


@dataclass
class SyntheticConfig:
    """How synthetic text crops look. Probabilities are per sample; each ingredient can be switched off (`0.0`).

    The defaults imitate real scene-text crops (MJSynth/SynthText-style composition, loose detector boxes with
    neighbouring text, photographed surfaces and capture): the ablation table in `docs/accuracy.md` shows what
    each ingredient adds on real crops.

    Args:
        min_height, max_height: height of the font's line (ascender to descender) plus its margins, in pixels: the
            crop's height when the box is drawn around the line. A box around the ink (`ink_box_p`) is lower, by
            how much of the line the text's glyphs leave empty; a warp can make either a little taller.
        margin: range of each margin around the text, as a fraction of the line height (when `loose_crop_p`
            does not apply).
        min_contrast: smallest luminance difference between text and the background behind it (0-255).
        font_category_weights: how often each font category is drawn (`fonts.CATEGORIES`); within a category each
            family is equally likely, so no family dominates whatever its number of files.
        heavy_font_p: chance of a bold or heavier face (style or variable weight), as signs are often set.
        background_dirs: folders of the user's own photos; patches of them are backgrounds with chance
            `photo_background_p`. Without them (the default), procedural textures only.
        photo_background_p: chance of a photo patch when `background_dirs` is given.
        neutral_background_p: chance of a flat grey-ish background (white, black, concrete, paper) instead of a
            textured one.
        palette_color_p: chance of a text colour from the background's palette or a sign colour, moved to the
            contrast it needs (else any colour with enough contrast, as older versions did).
        blend_p: chance of blending the text into the surface (multiply, overlay, partial opacity, or keeping
            the surface's texture inside the strokes) instead of painting it on.
        emboss_p: chance of an embossed or engraved edge.
        neighbor_p: chance of neighbouring words and lines around the text, partly visible in the crop as in a
            detector's box on a real sign or page.
        ink_box_p: chance the box is drawn around the ink itself, as the annotators of ICDAR, IIIT5K and SVT drew
            theirs, instead of around the font's whole line (ascender to descender). Real crops measured with
            `scripts/preview_synthetic.py --stats` have the text over ~84% of their height; line boxes gave ~66%.
        loose_crop_p, clip_p: chance of a loose box (large, uneven margins) and of a box that clips the ends of the
            text a little.
        rotate_p, max_rotation: chance of a rotation and its largest angle in degrees (most are much smaller).
        perspective_p, perspective_strength: chance of a perspective warp and its strength (corner shift / height).
        curve_p, max_bend: chance of a curved baseline and its largest bend (fraction of the height).
        shear_p: chance of a horizontal slant.
        squeeze_p: chance of a vertical squeeze or stretch (0.7-1.4x).
        spacing_p: chance of extra or tighter spacing between characters.
        outline_p, shadow_p: chance of an outline of another colour, and of a drop shadow.
        underline_p, border_p: chance of an underline, and of a box around the text.
        small_text_p: chance of text captured 6-16 px high and upsampled.
        lighting_p, highlight_p: chance of uneven light, and of a specular highlight when it applies.
        blur_p, defocus_p, motion_blur_p: chance of a slight blur, an out-of-focus blur, and a motion blur.
        noise_p, jpeg_p, low_resolution_p: chance of sensor noise, JPEG compression and a low-resolution capture.
        contrast_p, color_cast_p: chance of compressed contrast, and of a colour cast.
        max_capture_effects: most capture degradations one crop gets (the first ones drawn are kept in order).
        line_p: chance a sample is a text line instead of a word: words with punctuation, numbers, dates and codes
            one space apart (`TextSampler.sample_line`), drawn as one string (real spacing and kerning) through the
            same fonts, composition, geometry and capture as a word. Its label has the spaces when the charset has
            the space (`printable_space`), else the words run together in the label. Which samples are lines is
            drawn apart from the rest, so the word samples are the same whatever `line_p` is.
        text_kind_weights: how often each kind of string is drawn (`text_sampler.TEXT_KINDS`: `word`, `two_words`,
            `alphanumeric`, `number`, `phone`, `code`, `date`, `price`, `punctuated`, `any_characters`); `None`
            for `TEXT_KINDS`' own weights. Kinds left out are never drawn.
        word_case_weights: how often a word is drawn in capitals, capitalised or lower case
            (`{"upper": ..., "capitalised": ..., "lower": ...}`); `None` for `text_sampler.WORD_CASES`.
        word_length_weights: how often a word of each length is drawn from the word list (`{length: weight}`), or
            `"scene_text"` for the lengths of the real benchmarks' training words
            (`text_sampler.SCENE_TEXT_WORD_LENGTHS`, mean 5.3 characters); `None` draws every word of the list
            equally often (mean 7.0 for the default list).
        line_chars: the range of a line's label length in characters (drawn uniformly). At height 32 a line of 120
            characters is about 1,500-2,000 px wide: train with a `max_width` that holds it (wider lines are
            squeezed).
    """

    min_height: int = 32
    max_height: int = 48
    margin: tuple[float, float] = (0.0, 0.12)
    min_contrast: float = 70.0
    font_category_weights: dict[str, float] | None = None
    heavy_font_p: float = 0.4
    background_dirs: list[str] | None = None
    photo_background_p: float = 0.6
    neutral_background_p: float = 0.3
    palette_color_p: float = 0.8
    blend_p: float = 0.3
    emboss_p: float = 0.05
    neighbor_p: float = 0.5
    ink_box_p: float = 0.8
    loose_crop_p: float = 0.2
    clip_p: float = 0.08
    rotate_p: float = 0.35
    max_rotation: float = 10.0
    perspective_p: float = 0.3
    perspective_strength: float = 0.12
    curve_p: float = 0.1
    max_bend: float = 0.25
    shear_p: float = 0.15
    squeeze_p: float = 0.25
    spacing_p: float = 0.15
    outline_p: float = 0.08
    shadow_p: float = 0.1
    underline_p: float = 0.04
    border_p: float = 0.05
    small_text_p: float = 0.2
    lighting_p: float = 0.35
    highlight_p: float = 0.3
    blur_p: float = 0.2
    defocus_p: float = 0.1
    motion_blur_p: float = 0.08
    noise_p: float = 0.35
    jpeg_p: float = 0.35
    low_resolution_p: float = 0.1
    contrast_p: float = 0.2
    color_cast_p: float = 0.25
    max_capture_effects: int = 3
    line_p: float = 0.0
    line_chars: tuple[int, int] = (10, 120)
    text_kind_weights: dict[str, float] | None = None
    word_case_weights: dict[str, float] | None = None
    word_length_weights: dict[int, float] | str | None = None

    def __post_init__(self):
        if not 4 <= self.min_height <= self.max_height:
            raise ValueError(f"Need 4 <= min_height <= max_height, got {self.min_height} and {self.max_height}.")
        self.margin = tuple(self.margin)
        self.line_chars = tuple(int(value) for value in self.line_chars)
        if len(self.line_chars) != 2 or not 1 <= self.line_chars[0] <= self.line_chars[1]:
            raise ValueError(
                f"`line_chars` is a (min, max) range of line lengths with 1 <= min <= max, got {self.line_chars}."
            )
        if self.font_category_weights is None:
            self.font_category_weights = dict(_DEFAULT_CATEGORY_WEIGHTS)
        check_weights("font_category_weights", self.font_category_weights, CATEGORIES)
        if self.text_kind_weights is not None:
            check_weights("text_kind_weights", self.text_kind_weights, TEXT_KINDS)
        if self.word_case_weights is not None:
            check_weights("word_case_weights", self.word_case_weights, WORD_CASES)
        if isinstance(self.word_length_weights, str) and self.word_length_weights != "scene_text":
            raise ValueError(
                '`word_length_weights` is `{length: weight}`, "scene_text" or None, got '
                f"{self.word_length_weights!r}."
            )
        if isinstance(self.word_length_weights, dict):  # JSON's keys are strings
            self.word_length_weights = length_weights(self.word_length_weights)
        if isinstance(self.background_dirs, (str, os.PathLike)):
            self.background_dirs = [os.fspath(self.background_dirs)]
        for name, value in vars(self).items():
            if name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` is a probability in [0, 1], got {value}.")


def synthetic_config_from(
    value: str | None, background_dirs: Sequence[str | os.PathLike] | None = None
) -> SyntheticConfig | None:
    """A `SyntheticConfig` from JSON text or a JSON file of its fields (`scripts/configs/synthetic_light.json`). A
    training preset's file gives its `synthetic_config` entry (JSON, or the name of such a file), or the defaults
    when it has none. `background_dirs` (the scripts' `--background_dirs`) replaces the config's. `None` and no
    folders give `None` (the defaults). Unknown fields are a `ValueError` naming them."""
    if value is None:
        loaded = {}
    elif os.path.isfile(value):
        with open(value, encoding="utf-8") as handle:
            loaded = json.load(handle)
        if {"synthetic_config", "output_dir", EXTENDS_KEY} & set(loaded):  # a training preset
            loaded = load_preset(value)
            inner = loaded.get("synthetic_config")
            if isinstance(inner, str):  # it names a file of its own (e.g. scripts/configs/synthetic_light.json)
                return synthetic_config_from(inner, background_dirs)
            loaded = inner or {}
    else:
        loaded = json.loads(value)
    unknown = sorted(set(loaded) - {field.name for field in fields(SyntheticConfig)})
    if unknown:
        raise ValueError(
            f"Unknown SyntheticConfig fields {unknown} in {value!r}; the fields are those of "
            "`mambaocr_hf.data.SyntheticConfig` (see scripts/configs/synthetic_light.json)."
        )
    if background_dirs:
        loaded = {**loaded, "background_dirs": [os.fspath(folder) for folder in background_dirs]}
    return SyntheticConfig(**loaded) if value is not None or background_dirs else None


# seed entropy of the draw that makes a sample a text line, apart from the sample's own stream
_LINE_STREAM = zlib.crc32(b"text line")
RENDER_ATTEMPTS = 5  # draws of one sample before its render error is raised (`SyntheticTextGenerator.render`)
# a line may be rotated only so far that its far end drifts by this fraction of the line's height: a 40:1 line at
# a word's angle (up to 10 degrees) would be a thin diagonal in a crop seven times its height
_LINE_DRIFT = 0.4


def _split_code(split: str | None) -> list[int]:
    """Seed entropy of a split: none for the training split, a stable hash otherwise (so splits never overlap)."""
    if split in (None, "train"):
        return []
    return [zlib.crc32(str(split).encode("utf-8"))]


class SyntheticTextGenerator:
    """Renders word images with their labels, deterministically from `(seed, split, index)`.

    Text comes from a word list plus scene-text strings (capitalised and upper-case words, numbers, prices, phone
    numbers, dates, short codes, two-word strings), restricted to the characters the tokenizer's charset can label
    (`TextSampler`); with `config.line_p`, some samples are text lines of several such strings instead. Fonts (sans, condensed, display/sign, serif, mono and script faces) come from `font_dirs`, the
    system's font folders and the `synth` extra's font packages, drawn by category and then by family; a face that
    lacks a glyph of the text is never used for it. Each sample is composed as MJSynth and SynthText do: a surface
    (a patch of the user's photos from `config.background_dirs`, or a procedural texture), the text in a colour of
    the scene's palette with a contrast constraint, optional outline, shadow or emboss, blended into the surface;
    neighbouring words and lines around it; geometry (rotation, perspective, curve, shear, squeeze); a crop with a
    jittered, often loose box; and capture effects (small text upsampled, uneven light, blur, noise, JPEG, faded
    contrast, colour casts). `config` switches each of them.

    Args:
        tokenizer (`MambaOCRTokenizer`, *optional*): its charset restricts the text (and its `char_map` folds it).
            Defaults to `MambaOCRTokenizer()` (36 lower-case alphanumerics; images still show both cases).
        charset (`str`, *optional*): a charset instead of a tokenizer (name or characters).
        seed (`int`, defaults to 0): the dataset seed.
        split (`str`, *optional*): other splits than `"train"` get different samples for the same seed.
        font_dirs: extra font folders or files.
        use_system_fonts, use_package_fonts: also use system fonts / the `synth` extra's font packages.
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
        lengths = self.config.word_length_weights
        self.sampler = TextSampler(
            self.normalizer.charset,
            self.normalizer.fold,
            load_words(words),
            max_length,
            kind_weights=self.config.text_kind_weights,
            case_weights=self.config.word_case_weights,
            word_length_weights=SCENE_TEXT_WORD_LENGTHS if lengths == "scene_text" else lengths,
        )
        scan = scan_fonts(font_dirs, use_system_fonts, use_package_fonts, required_characters="")
        # a font must draw every letter and digit; rarer characters are checked per sample (`_pick_font`)
        self.fonts = [font for font in scan.fonts if not missing_characters(font.path, self.sampler.alphanumerics)]
        self.font_skips = {reason: len(paths) for reason, paths in scan.skipped.items() if paths}
        lacking = len(scan.fonts) - len(self.fonts)
        if lacking:
            self.font_skips["missing_glyphs"] = self.font_skips.get("missing_glyphs", 0) + lacking
        if not self.fonts:
            raise ValueError(
                "No usable font found: pass `font_dirs` with .ttf/.otf files, or install the synthetic-data extra "
                '(`pip install "mambaocr-hf[synth]"` brings ~200 font families).'
            )
        if self.font_skips:
            logger.info(f"Synthetic fonts: {len(self.fonts)} usable; skipped {self.font_skips}.")
        self._profiles = {font.path: font_profile(font.path) for font in self.fonts}
        self._font_cache: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}
        self._by_category: dict[str, dict[str, list[FontInfo]]] = {}
        for font in self.fonts:
            self._by_category.setdefault(font.category, {}).setdefault(font.family, []).append(font)
        weights = self.config.font_category_weights
        self._categories = [name for name in sorted(self._by_category) if weights.get(name, 0) > 0]
        if not self._categories:  # the weighted categories have no font here: draw from what there is
            self._categories = sorted(self._by_category)
            self._category_p = np.full(len(self._categories), 1.0 / len(self._categories))
        else:
            total = sum(weights[name] for name in self._categories)
            self._category_p = np.array([weights[name] / total for name in self._categories])
        self.backgrounds = PhotoBackgrounds(self.config.background_dirs) if self.config.background_dirs else None
        self.render_failures = 0  # renders drawn again (`render`), in this process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_font_cache": {}}

    @property
    def num_fonts(self) -> int:
        return len(self.fonts)

    def describe(self) -> dict:
        """What the generator draws from (for logs and model cards)."""
        return {
            "seed": self.seed,
            "split": self.split or "train",  # None and "train" draw the same samples
            "charset": self.normalizer.charset,
            "drawable_characters": self.sampler.drawable,
            "num_words": len(self.sampler.words),
            "num_fonts": self.num_fonts,
            "num_font_families": len({font.family for font in self.fonts}),
            "fonts_by_category": {key: sum(map(len, value.values())) for key, value in self._by_category.items()},
            "fonts_skipped": self.font_skips,
            "num_background_photos": len(self.backgrounds) if self.backgrounds else 0,
            "config": self._config_description(),
        }

    def _config_description(self) -> dict:
        config = asdict(self.config)
        if not config["line_p"]:  # word-only generators describe themselves as before (the cache's key)
            del config["line_p"], config["line_chars"]
        return config

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

    def _pick_font(self, text: str, rng: np.random.Generator) -> FontInfo | None:
        """A font that draws every character of `text`: category (by weight), family, then file (a heavy style
        with chance `heavy_font_p`). `None` when no font draws them all."""
        for _ in range(8):
            category = self._categories[rng.choice(len(self._categories), p=self._category_p)]
            families = self._by_category[category]
            names = sorted(families)
            files = families[names[rng.integers(len(names))]]
            heavy = [font for font in files if font.heavy]
            if heavy and rng.random() < self.config.heavy_font_p:
                files = heavy
            font = files[rng.integers(len(files))]
            if not missing_characters(font.path, text):
                return font
        usable = [font for font in self.fonts if not missing_characters(font.path, text)]
        return usable[rng.integers(len(usable))] if usable else None

    def _draw_text(
        self,
        draw: ImageDraw.ImageDraw,
        origin: tuple[float, float],
        text: str,
        font: ImageFont.FreeTypeFont,
        spacing: float,
        stroke: int,
    ) -> None:
        if spacing:
            x = float(origin[0])
            for char in text:
                draw.text((x, origin[1]), char, font=font, fill=255, stroke_width=stroke)
                x += font.getlength(char) + spacing
        else:
            draw.text(origin, text, font=font, fill=255, stroke_width=stroke)

    def _draw_mask(
        self, text: str, font: ImageFont.FreeTypeFont, rng: np.random.Generator, stroke: int, neighbors: bool
    ) -> tuple[list[Image.Image], tuple[int, int]]:
        """The text as "L" masks on a padded canvas: `[text, outline or None, neighbours or None]`, and how far
        the font's line reaches above and below the ink."""
        config = self.config
        spacing = 0.0
        if rng.random() < config.spacing_p and len(text) > 1:
            spacing = rng.uniform(-0.08, 0.35) * font.size
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
        width = right - left + max(0, math.ceil(spacing * (len(text) - 1)))
        height = bottom - top
        ascent, descent = font.getmetrics()
        line = ascent + descent
        # room for the loosest crop (and the neighbours seen in it) on every side
        pad_x = max(4, int(0.35 * height)) + stroke + (int(1.2 * line) if neighbors or config.loose_crop_p else 0)
        pad_y = max(4, int(0.35 * height)) + stroke + (int(0.9 * line) if neighbors else 0)
        size = (width + 2 * pad_x, height + 2 * pad_y)
        mask = Image.new("L", size, 0)
        outline = Image.new("L", size, 0) if stroke else None
        origin = (pad_x - left, pad_y - top)
        self._draw_text(ImageDraw.Draw(mask), origin, text, font, spacing, 0)
        if outline is not None:
            self._draw_text(ImageDraw.Draw(outline), origin, text, font, spacing, stroke)
        box = (pad_x, pad_y, pad_x + width, pad_y + height)
        line_extents = (max(0, top), max(0, line - bottom))  # `top`, `bottom` are from the ascender line
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
        context = self._draw_neighbors(size, origin, width, line, font, rng) if neighbors else None
        return [mask, outline, context], line_extents

    def _draw_neighbors(
        self,
        size: tuple[int, int],
        origin: tuple[float, float],
        width: int,
        line: int,
        font: ImageFont.FreeTypeFont,
        rng: np.random.Generator,
    ) -> Image.Image:
        """Words beside the text and lines above and below it, as on a sign or a page (their labels are not
        the sample's: only their parts that a loose box shows end up in the crop)."""
        context = Image.new("L", size, 0)
        draw = ImageDraw.Draw(context)
        space = font.getlength(" ") or font.size * 0.3
        gap = space * rng.uniform(0.8, 2.5)
        words = [self.sampler.sample(rng)[0] for _ in range(6)]
        words = [word for word in words if not missing_characters(font.path, word)] or ["0"]
        x0, y0 = origin
        if rng.random() < 0.7:  # a word on the left, ending a gap before the text
            word = words[0]
            draw.text((x0 - gap - font.getlength(word), y0), word, font=font, fill=255)
        if rng.random() < 0.7:  # and on the right
            draw.text((x0 + width + gap, y0), words[1 % len(words)], font=font, fill=255)
        leading = line * rng.uniform(1.0, 1.5)
        for direction, word in ((-1, words[2 % len(words)]), (1, words[3 % len(words)])):
            if rng.random() < 0.5:
                shift = rng.uniform(-0.5, 0.3) * max(width, 1)
                text = word + " " + words[4 % len(words)]
                draw.text((x0 + shift, y0 + direction * leading), text, font=font, fill=255)
        return context

    def _warp(
        self, masks: list[Image.Image | None], rng: np.random.Generator, max_rotation: float | None = None
    ) -> list[Image.Image | None]:
        """The same random geometric warps applied to each mask (`None` stays `None`); rotations up to
        `max_rotation` degrees (default `config.max_rotation`)."""
        config = self.config
        max_rotation = config.max_rotation if max_rotation is None else max_rotation
        steps = []
        if rng.random() < config.curve_p:
            steps.append(("curve", int(rng.integers(2**32))))
        if rng.random() < config.shear_p:
            steps.append(("shear", int(rng.integers(2**32))))
        if rng.random() < config.perspective_p:
            steps.append(("perspective", int(rng.integers(2**32))))
        if rng.random() < config.rotate_p:
            angle = float(np.clip(rng.normal(0.0, max_rotation / 3), -max_rotation, max_rotation))
            steps.append(("rotate", angle))
        warped = []
        for mask in masks:
            if mask is None:
                warped.append(None)
                continue
            for name, value in steps:
                if name == "rotate":
                    mask = effects.rotate(mask, value)
                    continue
                step_rng = np.random.default_rng(value)  # same warp for the text, its outline and neighbours
                if name == "curve":
                    mask = effects.curve(mask, step_rng, config.max_bend * mask.height * 0.5)
                elif name == "shear":
                    mask = effects.shear(mask, step_rng, 0.3)
                else:
                    mask = effects.perspective(mask, step_rng, config.perspective_strength)
            warped.append(mask)
        return warped

    def _crop_box(
        self, ink: tuple[int, int, int, int], extents: tuple[int, int], line: int, rng: np.random.Generator
    ) -> tuple[int, int, int, int]:
        """The box a detector or annotator would draw: the text's line with margins that are tight, ordinary or
        loose (uneven, up to most of a line), and now and then clipping the ends of the text a little."""
        config = self.config
        left, top, right, bottom = ink
        above, below = extents
        if rng.random() < config.ink_box_p:  # around the glyphs, not the font's line
            above = below = 0
        if rng.random() < config.loose_crop_p:
            margins = rng.uniform(0.0, 1.0, size=4) ** 1.5 * np.array([1.0, 0.7, 1.0, 0.7])
        else:
            margins = rng.uniform(*config.margin, size=4)
        if rng.random() < config.clip_p:  # clip one or both ends by up to ~a third of a character
            ends = [0, 2] if rng.random() < 0.3 else [int(rng.choice([0, 2]))]
            margins[ends] = -rng.uniform(0.03, 0.15, size=len(ends))
        # an end is clipped by at most a quarter of the ink's width: a line-relative clip of both ends of a narrow
        # word ("l", "1") would otherwise cross over and leave an empty box
        most = (right - left) // 4
        return (
            left - max(round(margins[0] * line), -most),
            top - above - round(margins[1] * line),
            right + max(round(margins[2] * line), -most),
            bottom + below + round(margins[3] * line),
        )

    def _background(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        config = self.config
        if self.backgrounds is not None and rng.random() < config.photo_background_p:
            patch = self.backgrounds.patch(height, width, rng)
            # text is set on surfaces, not on clutter (SynthText picks regions of even colour): calm a busy patch
            spread = float(luminance(patch).std())
            if spread > 28.0:
                mean = patch.mean((0, 1), keepdims=True)
                patch = mean + (patch - mean) * (28.0 / spread)
            return patch
        if rng.random() < config.neutral_background_p:
            kind = "plain" if rng.random() < 0.6 else "paper"
            image = procedural_background(height, width, rng, kind)
            gray = image.mean(-1, keepdims=True)
            return np.clip(gray + (image - gray) * 0.2, 0, 255)
        return procedural_background(height, width, rng)

    def _paint(self, masks: list[Image.Image | None], rng: np.random.Generator) -> Image.Image:
        """Colour the text (and its outline, neighbours, shadow or emboss) over a background and blend it in."""
        config = self.config
        mask, outline, context = masks
        width, height = mask.size
        surface = self._background(height, width, rng)
        alpha = np.asarray(mask, dtype=np.float32) / 255.0
        if rng.random() < config.palette_color_p:
            color = text_color(surface, alpha, rng, config.min_contrast)
        else:
            weight = max(float(alpha.sum()), 1e-3)
            behind = (surface * alpha[..., None]).sum((0, 1)) / weight
            color = effects.contrasting_color(behind, rng, config.min_contrast)
        image = surface.copy()
        if rng.random() < config.shadow_p:
            offset = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
            shadow = Image.new("L", mask.size, 0)
            shadow.paste(mask, offset)
            shade = np.asarray(shadow, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.4, 0.8)
            image = image * (1 - shade) + (image * 0.3) * shade
        if context is not None:
            near = np.asarray(context, dtype=np.float32)[..., None] / 255.0
            other = color if rng.random() < 0.7 else text_color(surface, alpha, rng, config.min_contrast)
            image = image * (1 - near) + other[None, None, :] * near
        if outline is not None:
            outline_color = effects.contrasting_color(color, rng, config.min_contrast)
            ring = np.asarray(outline, dtype=np.float32)[..., None] / 255.0
            image = image * (1 - ring) + outline_color[None, None, :] * ring
        if rng.random() < config.emboss_p:
            light = np.roll(alpha, (-1, -1), axis=(0, 1)) - alpha  # edges facing the light
            sign = 1.0 if rng.random() < 0.5 else -1.0  # raised or engraved
            image = (
                image + sign * 90.0 * np.clip(light, 0, 1)[..., None] - sign * 90.0 * np.clip(-light, 0, 1)[..., None]
            )
        text = alpha[..., None]
        if rng.random() < config.blend_p:
            mode = int(rng.integers(4))
            if mode == 0:  # multiply: dark ink on a textured surface keeps the texture
                painted = image * color[None, None, :] / 255.0
                painted = np.where(luminance(color) < luminance(image.mean((0, 1))), painted, color)
            elif mode == 1:  # overlay
                base = image / 255.0
                top = color[None, None, :] / 255.0
                painted = 255.0 * np.where(base < 0.5, 2 * base * top, 1 - 2 * (1 - base) * (1 - top))
                painted = 0.5 * painted + 0.5 * color[None, None, :]
            elif mode == 2:  # paint worn thin: partial opacity
                painted = color[None, None, :] * np.ones_like(image)
                text = text * rng.uniform(0.6, 0.9)
            else:  # Poisson-like: the surface's detail shows through the ink
                blurred = np.asarray(
                    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(2)),
                    dtype=np.float32,
                )
                painted = color[None, None, :] + (image - blurred) * rng.uniform(0.5, 1.0)
            image = image * (1 - text) + painted * text
        else:
            image = image * (1 - text) + color[None, None, :] * text
        return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")

    def _capture(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """How a camera sees it: a squeezed aspect, one loss of sharpness (small text upsampled, low resolution,
        defocus, blur or motion blur), uneven light, faded contrast, a colour cast, noise, JPEG. At most
        `max_capture_effects` of these degrade one crop (the squeeze aside), so the text stays readable as a real
        crop is."""
        config = self.config
        if rng.random() < config.squeeze_p:
            image = effects.squeeze(image, rng)
        # one loss of resolution or sharpness at most (stacked, they erase the text), then light, colour and noise
        softening = None
        if rng.random() < config.small_text_p:
            softening = effects.small_text
        elif rng.random() < config.low_resolution_p:
            softening = effects.low_resolution
        elif rng.random() < config.defocus_p:
            softening = effects.defocus_blur
        elif rng.random() < config.blur_p:
            softening = effects.gaussian_blur
        elif rng.random() < config.motion_blur_p:
            softening = effects.directional_motion_blur
        steps = [softening] if softening is not None else []
        if rng.random() < config.lighting_p:
            steps.append(lambda image, rng: effects.lighting(image, rng, config.highlight_p))
        if rng.random() < config.contrast_p:
            steps.append(effects.compress_contrast)
        if rng.random() < config.color_cast_p:
            steps.append(effects.color_cast)
        if rng.random() < config.noise_p:
            steps.append(effects.sensor_noise if rng.random() < 0.5 else effects.add_noise)
        if rng.random() < config.jpeg_p:
            steps.append(effects.jpeg)
        if len(steps) > config.max_capture_effects:
            keep = np.sort(rng.choice(len(steps), size=config.max_capture_effects, replace=False))
            steps = [steps[i] for i in keep]
        for step in steps:
            image = step(image, rng)
        return image

    def is_line(self, index: int) -> bool:
        """Whether sample `index` is a text line (chance `config.line_p`). Drawn from a stream of its own, so the
        other samples are the words they would be without lines."""
        if self.config.line_p <= 0.0:
            return False
        rng = np.random.default_rng([self.seed, int(index), *_split_code(self.split), _LINE_STREAM])
        return bool(rng.random() < self.config.line_p)

    def _text_and_font(self, rng: np.random.Generator, line: bool = False) -> tuple[str, str, FontInfo]:
        """A string (a text line with `line`), its label and a font that draws every character of it, the space
        included (another string when none does)."""
        for _ in range(20):
            text, label = self.sampler.sample_line(rng, *self.config.line_chars) if line else self.sampler.sample(rng)
            info = self._pick_font(text, rng)
            if info is not None:
                return text, label, info
        length = self.config.line_chars[0] if line else 5  # every font draws the letters and digits
        text = "".join(
            self.sampler.alphanumerics[i] for i in rng.integers(len(self.sampler.alphanumerics), size=length)
        )
        return text, self.sampler.label(text), self.fonts[rng.integers(len(self.fonts))]

    def render(self, index: int, line: bool | None = None) -> tuple[Image.Image, str]:
        """The RGB image and label of sample `index`: a word, or a text line of `config.line_chars` characters
        (`is_line(index)` decides; `line=True` or `False` forces one or the other).

        A render that fails (a rare combination of text, font and effects that the drawing code does not survive)
        is drawn again from other random streams, still a function of `index` alone: one bad sample never stops a
        training run or a cache. Failures are counted in `render_failures`; the first is logged with its
        traceback. Only when `RENDER_ATTEMPTS` draws in a row fail is the error raised (a defect, not bad luck).
        """
        if index < 0:
            raise IndexError(f"Sample indices are non-negative, got {index}.")
        line = self.is_line(index) if line is None else line
        for attempt in range(RENDER_ATTEMPTS - 1):
            try:
                return self._render(index, line, attempt)
            except Exception:
                self.render_failures += 1
                if self.render_failures == 1 or self.render_failures % 100 == 0:
                    logger.warning(
                        f"Synthetic sample {index} (split {self.split or 'train'}, seed {self.seed}) failed to render "
                        f"and is drawn again from another random stream ({self.render_failures} such failures in "
                        "this process so far; later ones are counted, and logged every 100th).",
                        exc_info=self.render_failures == 1,
                    )
        return self._render(index, line, RENDER_ATTEMPTS - 1)  # its error is raised: a defect, not bad luck

    def _render(self, index: int, line: bool, attempt: int = 0) -> tuple[Image.Image, str]:
        """`render`'s draw number `attempt` of sample `index` (0: the sample's own random stream)."""
        rng = np.random.default_rng([self.seed, int(index), *_split_code(self.split), *([attempt] if attempt else [])])
        config = self.config
        text, label, info = self._text_and_font(rng, line)
        profile = self._profiles[info.path]
        drawable = self.sampler.can_draw_line if line else self.sampler.can_draw
        if profile["caseless"] and text.upper() != text and drawable(text.upper()):
            if not missing_characters(info.path, text.upper()):
                text = text.upper()  # an all-caps font draws capitals whatever it is given: say so in the label
                label = self.sampler.line_label(text) if line else self.sampler.label(text)
        target_height = int(rng.integers(config.min_height, config.max_height + 1))
        margins = rng.uniform(*config.margin, size=2)  # top, bottom: how much of the height the line fills
        size = round(target_height / (profile["line_ratio"] * (1 + margins[0] + margins[1])))
        font = self._font(info.path, max(6, size))
        axes = profile["axes"]
        if axes:  # variable font: a random weight (and width, where it has one), often heavy
            heavy = rng.random() < config.heavy_font_p
            values = [int(rng.integers(low, high + 1)) for low, high in axes]
            if heavy:
                values[0] = int(rng.integers(max(axes[0][0], min(600, axes[0][1])), axes[0][1] + 1))
            font.set_variation_by_axes(values)
        stroke = int(rng.integers(1, 3)) if rng.random() < config.outline_p else 0
        neighbors = rng.random() < config.neighbor_p
        masks, extents = self._draw_mask(text, font, rng, stroke, neighbors)
        max_rotation = None
        if line:  # the far end of a line drifts by at most _LINE_DRIFT of its height
            drift = _LINE_DRIFT * sum(font.getmetrics()) / max(font.getlength(text), 1.0)
            max_rotation = min(config.max_rotation, math.degrees(math.atan(drift)))
        masks = self._warp(masks, rng, max_rotation)
        ink = (masks[1] if masks[1] is not None else masks[0]).getbbox()
        if ink is None:  # the text vanished (an empty glyph): keep the whole canvas
            ink = (0, 0, masks[0].width, masks[0].height)
        line = sum(font.getmetrics()) + 2 * stroke
        crop = self._crop_box(ink, extents, line, rng)
        masks = [mask.crop(crop) if mask is not None else None for mask in masks]
        image = self._paint(masks, rng)
        return self._capture(image, rng), label

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
