# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The demo's confidence picture and character table: where each character was read and how sure the model was.

Pure PIL, no Gradio, so the drawing can be used and tested on its own. The x-ranges come from the pipeline's
`output_char_details=True` (`x_start` / `x_end` in the input image's pixels: the CTC frames that emitted the
character, each frame `frame_stride` pixels of the 32-pixel-high resized crop, scaled back to the input's width).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

# confidence -> colour: red at 0, amber at 0.5, green at 1
_RED, _AMBER, _GREEN = (220, 38, 38), (245, 158, 11), (22, 163, 74)
LOW_CONFIDENCE = 0.5
CHAR_TABLE_HEADERS = ["image", "#", "char", "confidence", "x from", "x to", "flag"]


def confidence_color(confidence: float) -> tuple[int, int, int]:
    """Red (0) -> amber (0.5) -> green (1)."""
    confidence = min(max(float(confidence), 0.0), 1.0)
    low, high, t = (_RED, _AMBER, confidence / 0.5) if confidence < 0.5 else (_AMBER, _GREEN, confidence / 0.5 - 1)
    return tuple(round(a + (b - a) * t) for a, b in zip(low, high))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def confidence_picture(
    image: Image.Image,
    chars: Sequence[dict],
    threshold: float = LOW_CONFIDENCE,
    height: int = 96,
    max_width: int = 1600,
) -> Image.Image:
    """The crop, enlarged to `height`, with each character's x-range boxed and underlined in its confidence colour,
    the character and its confidence (in %) printed under it, and characters below `threshold` flagged in red with a
    `!` above them.

    Args:
        image: the input crop, as read.
        chars: the pipeline's per-character details (`char`, `confidence`, `x_start`, `x_end` in `image` pixels).
        threshold: characters whose confidence is below it are flagged.
        height: height of the enlarged crop in the picture.
        max_width: the crop is shrunk further if it would be wider than this.

    Returns:
        An RGB image: a flag band, the crop with the boxes, an underline band, and a band of characters and
        confidences, on as many rows as keep neighbouring labels apart (`label_layout`).
    """
    image = image.convert("RGB")
    scale = min(height / image.height, max_width / image.width)
    width, crop_height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    crop = image.resize((width, crop_height), Image.Resampling.BICUBIC)
    label_size = max(12, crop_height // 4)
    label_font, small_font = _font(label_size), _font(max(10, label_size * 3 // 4))
    boxes = []
    for char in chars:
        left = max(0, min(width - 1, int(round(char["x_start"] * scale))))
        right = max(left + 1, min(width, int(round(char["x_end"] * scale))))
        boxes.append((left, right, confidence_color(char["confidence"]), char["confidence"] < threshold))
    percents = [f"{100 * char['confidence']:.0f}" for char in chars]
    labels = label_layout(
        [(left + right) / 2 for left, right, _, _ in boxes],
        [
            max(label_font.getlength(char["char"]), small_font.getlength(percent))
            for char, percent in zip(chars, percents)
        ],
        width,
        gap=max(2, label_size // 4),
    )
    row_height = 2 * label_size + 10
    flag_band, underline_band = label_size + 4, 8
    text_band = row_height * (1 + max((row for _, row in labels), default=0))
    canvas = Image.new("RGB", (width, flag_band + crop_height + underline_band + text_band), "white")
    canvas.paste(crop, (0, flag_band))
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    shade = ImageDraw.Draw(overlay)
    for left, right, color, _ in boxes:  # a light tint first, so the outlines and labels stay crisp on top
        shade.rectangle((left, flag_band, right - 1, flag_band + crop_height - 1), fill=(*color, 60))
    canvas = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    underline_top = flag_band + crop_height + 2
    for char, percent, (left, right, color, low), (center, row) in zip(chars, percents, boxes, labels):
        draw.rectangle((left, flag_band, right - 1, flag_band + crop_height - 1), outline=color, width=3 if low else 1)
        draw.rectangle((left, underline_top, right - 1, underline_top + underline_band - 3), fill=color)
        top = underline_top + underline_band + row * row_height
        draw.text((center, top), char["char"], fill=color, font=label_font, anchor="ma")
        draw.text((center, top + label_size + 4), percent, fill=(80, 80, 80), font=small_font, anchor="ma")
        if low:
            draw.text(((left + right) / 2, 2), "!", fill=_RED, font=label_font, anchor="ma")
    return canvas


def label_layout(
    centers: Sequence[float], widths: Sequence[float], canvas_width: int, gap: float = 3
) -> list[tuple[float, int]]:
    """Where to print each character's label (its character over its confidence): `(center x, row)`.

    A label is centred under its box, moved inwards where it would pass the picture's edge, and put on the first row
    where it clears the label before it by `gap` pixels: characters read close together (narrow letters, a `1`
    beside a `7`) get their labels on alternate rows instead of printed over each other. Labels are placed left to
    right, the order CTC reads them.

    Args:
        centers: the x centre of each character's box, in picture pixels.
        widths: the width of each label in pixels (the wider of the character and its confidence).
        canvas_width: the picture's width.
        gap: the space kept between two labels on one row.
    """
    row_ends: list[float] = []  # the right edge of the last label on each row
    layout = []
    for center, label_width in zip(centers, widths):
        half = label_width / 2
        center = min(max(center, half), max(half, canvas_width - half))
        row = next((row for row, end in enumerate(row_ends) if center - half >= end + gap), len(row_ends))
        if row == len(row_ends):
            row_ends.append(0.0)
        row_ends[row] = center + half
        layout.append((center, row))
    return layout


def char_rows(name: str, chars: Sequence[dict], threshold: float = LOW_CONFIDENCE) -> list[list]:
    """Rows of the per-character table (`CHAR_TABLE_HEADERS`) for one image."""
    return [
        [
            name,
            index + 1,
            char["char"],
            round(float(char["confidence"]), 4),
            char["x_start"],
            char["x_end"],
            "low" if char["confidence"] < threshold else "",
        ]
        for index, char in enumerate(chars)
    ]


__all__ = [
    "CHAR_TABLE_HEADERS",
    "LOW_CONFIDENCE",
    "char_rows",
    "confidence_color",
    "confidence_picture",
    "label_layout",
]
