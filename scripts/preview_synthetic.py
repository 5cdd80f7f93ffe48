#!/usr/bin/env python
"""Contact sheets to look at: N synthetic samples, and (given a folder of real crops) N of those beside them.

    python scripts/preview_synthetic.py --output synthetic.png --num_samples 60
    python scripts/preview_synthetic.py --output synthetic.png --real_dir /data/my_crops --background_dirs ~/Pictures
    python scripts/preview_synthetic.py --output demo.png --synthetic_config scripts/configs/synthetic_light.json
    python scripts/preview_synthetic.py --output lines.png --synthetic_config scripts/configs/lines_cpu.json \\
        --charset printable_space   # words and text lines mixed (line_p 0.2)

With `--real_dir`, a second sheet of real crops (`labels.tsv` folders, LMDB, ... anything `load_ocr_dataset` reads)
is written beside the first (`synthetic_real.png` for `--output synthetic.png`), at the same scale and layout. Each
cell shows the crop at height 48 with its label underneath. When the config draws text lines (`line_p` > 0), the
sheets have one sample a row, at the height the model reads (32 px) and up to 2,048 px wide, so whole lines show.

`--stats` also prints a table of image statistics (median and quartiles of colour saturation, colourfulness,
brightness, contrast, sharpness at the model's height, crop height and width per character), synthetic beside real,
so the gap a sheet shows can be measured:

    python scripts/preview_synthetic.py --output synthetic.png --real_dir /data/my_crops --stats --num_samples 500
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import SyntheticTextGenerator, load_ocr_dataset
from mambaocr_hf.data.backgrounds import luminance
from mambaocr_hf.data.synthetic import synthetic_config_from

CELL_HEIGHT = 48
MODEL_HEIGHT = 32  # sharpness is measured at the height the model reads
LABEL_HEIGHT = 14
LINE_CELL = (2054, 32)  # a cell for text lines: the widest the model reads without squeezing, at its height
_LABEL_CHAR_WIDTH = 6  # PIL's default font


def contact_sheet(
    samples: Iterable[tuple[Image.Image, str]],
    columns: int = 6,
    cell_width: int = 220,
    cell_height: int = CELL_HEIGHT,
) -> Image.Image:
    """A white sheet of `samples` (image, label) in rows of `columns` cells, each image scaled to `cell_height`
    (and cut at the cell's width), its label below it (cut at the cell's width too)."""
    samples = list(samples)
    if not samples:
        raise ValueError("No samples to draw.")
    rows = -(-len(samples) // columns)
    row_height = cell_height + LABEL_HEIGHT + 6
    sheet = Image.new("RGB", (columns * cell_width, rows * row_height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    label_chars = (cell_width - 6) // _LABEL_CHAR_WIDTH
    for index, (image, label) in enumerate(samples):
        image = image.convert("RGB")
        width = max(1, round(image.width * cell_height / image.height))
        image = image.resize((width, cell_height), Image.Resampling.BILINEAR)
        image = image.crop((0, 0, min(width, cell_width - 6), cell_height))  # no black band right of a narrow crop
        x, y = (index % columns) * cell_width + 3, (index // columns) * row_height + 2
        sheet.paste(image, (x, y))
        draw.text((x, y + cell_height + 1), label[:label_chars], fill=(40, 40, 40), font=font)
    return sheet


def image_statistics(image: Image.Image, label: str) -> dict[str, float]:
    """Low-level statistics of one crop, the ones in which synthetic text most often differs from photographs.

    - saturation: mean HSV saturation (0-1); colourfulness: Hasler and Suesstrunk's metric (0-~150, 0 is grey);
    - brightness: mean luminance (0-1); contrast: the 5th to 95th percentile range of luminance (0-1);
    - sharpness: mean absolute Laplacian of the luminance at height 32, over the contrast (blur lowers it);
    - height: the crop's own height in pixels; width_per_char: width over height over the label's length.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = red - green, 0.5 * (red + green) - blue
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    luma = luminance(rgb)
    low, high = np.percentile(luma, [5, 95])
    contrast = (high - low) / 255.0
    width = max(1, round(image.width * MODEL_HEIGHT / image.height))
    small = np.asarray(image.convert("L").resize((width, MODEL_HEIGHT), Image.Resampling.BILINEAR), np.float32)
    laplacian = (
        small[1:-1, :-2] + small[1:-1, 2:] + small[:-2, 1:-1] + small[2:, 1:-1] - 4 * small[1:-1, 1:-1]
        if min(small.shape) > 2
        else np.zeros(1, np.float32)
    )
    return {
        "saturation": float(saturation.mean()),
        "colourfulness": float(colourfulness),
        "brightness": float(luma.mean() / 255.0),
        "contrast": float(contrast),
        "sharpness": float(np.abs(laplacian).mean() / max(high - low, 1.0)),
        "height": float(image.height),
        "width_per_char": float(image.width / image.height / max(1, len(label))),
    }


def statistics_table(sets: dict[str, list[tuple[Image.Image, str]]]) -> str:
    """A markdown table: one row per statistic, a column per set, each cell `median (p25-p75)`."""
    stats = {name: [image_statistics(image, label) for image, label in samples] for name, samples in sets.items()}
    names = list(next(iter(stats.values()))[0])
    header = "| statistic | " + " | ".join(f"{name} (n={len(rows)})" for name, rows in stats.items()) + " |"
    lines = [header, "|---|" + "---:|" * len(stats)]
    for statistic in names:
        cells = []
        for rows in stats.values():
            p25, median, p75 = np.percentile([row[statistic] for row in rows], [25, 50, 75])
            cells.append(f"{median:.3g} ({p25:.3g}-{p75:.3g})")
        lines.append(f"| {statistic} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def real_samples(source: str, count: int, seed: int, split: str | None = None) -> list[tuple[Image.Image, str]]:
    """`count` crops of a real source, drawn at random from its first 20 x `count` rows."""
    rows = list(load_ocr_dataset(source, split=split, check_ctc=False).take(20 * count))
    if not rows:
        raise SystemExit(f"{source} holds no readable sample.")
    picks = np.random.default_rng(seed).choice(len(rows), size=min(count, len(rows)), replace=False)
    return [(rows[i]["image"], rows[i]["text"]) for i in sorted(picks)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="PNG file to write.")
    parser.add_argument("--num_samples", type=int, default=60, help="Cells per sheet.")
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="Generator seed (and the real crops' draw).")
    parser.add_argument("--split", default="train", help="Generator split.")
    parser.add_argument("--charset", default="alphanumeric", help="Named charset or its characters.")
    parser.add_argument("--synthetic_config", default=None, help="SyntheticConfig as JSON or a JSON file.")
    parser.add_argument("--background_dirs", nargs="+", default=None, help="Folders of photos for backgrounds.")
    parser.add_argument("--real_dir", default=None, help="A source of real crops to show beside the synthetic ones.")
    parser.add_argument("--real_split", default=None, help="Split of --real_dir.")
    parser.add_argument(
        "--stats", action="store_true", help="Also print image statistics of the samples (and of the real crops)."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    if args.num_samples < 1:
        raise SystemExit("--num_samples must be at least 1.")
    generator = SyntheticTextGenerator(
        tokenizer=MambaOCRTokenizer(charset=args.charset),
        seed=args.seed,
        split=args.split,
        config=synthetic_config_from(args.synthetic_config, args.background_dirs),
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    layout = {"columns": args.columns}
    if generator.config.line_p > 0:  # whole lines, one a row
        layout = {"columns": 1, "cell_width": LINE_CELL[0], "cell_height": LINE_CELL[1]}
    sets = {"synthetic": [generator.render(i) for i in range(args.num_samples)]}
    if args.real_dir:
        sets["real"] = real_samples(args.real_dir, args.num_samples, args.seed, args.real_split)
    written = []
    for name, samples in sets.items():
        path = output if name == "synthetic" else output.with_name(f"{output.stem}_{name}{output.suffix or '.png'}")
        contact_sheet(samples, **layout).save(path)
        written.append(path)
    print("Wrote " + " and ".join(str(path) for path in written))
    if args.stats:
        print(statistics_table(sets))
    return written


if __name__ == "__main__":
    main()
