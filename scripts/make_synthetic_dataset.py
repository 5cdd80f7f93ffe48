# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Write synthetic text crops to disk in any layout the loaders read.

    python scripts/make_synthetic_dataset.py --output_dir data/synth_lmdb --num_samples 100000 --format lmdb --seed 0
    python scripts/make_synthetic_dataset.py --output_dir data/lines --num_samples 3000 --format folder \
        --line_chars 15 150 --synthetic_config scripts/configs/demo_cpu.json   # text lines of 15-150 characters

A fixed seed gives byte-identical output on the same machine (same fonts, same library versions), whatever
`--num_workers` is. The fonts are this machine's: system fonts plus the project's font packages (use
`--no_system_fonts` for output that depends only on the installed packages).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import sys
from collections.abc import Iterator
from functools import partial

import numpy as np

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import SyntheticTextGenerator, write_dataset
from mambaocr_hf.data.lines import render_long_line
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.data.writers import FORMATS

_GENERATOR: SyntheticTextGenerator | None = None


def _init_worker(generator: SyntheticTextGenerator) -> None:
    global _GENERATOR
    _GENERATOR = generator


def _encode(index: int, image_format: str, line_chars: tuple[int, int] | None = None) -> tuple[bytes, str]:
    if line_chars is None:
        return _GENERATOR.encode(index, image_format)
    return encode_line(_GENERATOR, index, image_format, line_chars)


def encode_line(
    generator: SyntheticTextGenerator, index: int, image_format: str, line_chars: tuple[int, int]
) -> tuple[bytes, str]:
    """Sample `index` as a text line: words side by side (`render_long_line`), `line_chars` characters at least (a
    length drawn per sample), at most 2048 px wide."""
    low, high = line_chars
    min_chars = int(np.random.default_rng([generator.seed, index, 11]).integers(low, high + 1))
    image, text = render_long_line(generator, index, min_chars=min_chars, max_width=2048)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if image_format == "jpg" else "PNG", quality=92)
    return buffer.getvalue(), text


def samples(
    generator: SyntheticTextGenerator,
    image_format: str,
    num_workers: int,
    line_chars: tuple[int, int] | None = None,
) -> Iterator[tuple[bytes, str]]:
    """Encoded samples 0, 1, 2, ... in order (rendered by `num_workers` processes when > 1); text lines instead of
    words with `line_chars`."""
    indices = iter(range(sys.maxsize))
    if num_workers <= 1:
        _init_worker(generator)
        yield from (_encode(index, image_format, line_chars) for index in indices)
        return
    with multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (generator,)) as pool:
        yield from pool.imap(partial(_encode, image_format=image_format, line_chars=line_chars), indices, chunksize=8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="Folder to write (must be empty or absent).")
    parser.add_argument("--num_samples", type=int, required=True, help="How many samples to write.")
    parser.add_argument("--format", choices=FORMATS, default="lmdb", help="On-disk layout.")
    parser.add_argument("--seed", type=int, default=0, help="Dataset seed: the same seed gives the same samples.")
    parser.add_argument("--split", default="train", help="Split name (other splits get other samples).")
    parser.add_argument("--charset", default="lowercase_alphanumeric", help="Named charset or its characters.")
    parser.add_argument("--image_format", choices=("jpg", "png"), default="jpg", help="Image encoding.")
    parser.add_argument("--font_dirs", nargs="*", default=None, help="Extra font folders or files.")
    parser.add_argument("--no_system_fonts", action="store_true", help="Use only package and --font_dirs fonts.")
    parser.add_argument("--words", default=None, help="Word list file (one word per line); default English list.")
    parser.add_argument("--num_workers", type=int, default=1, help="Rendering processes.")
    parser.add_argument(
        "--line_chars",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="Write text lines (words side by side, up to 2048 px at height 32) of MIN to MAX characters.",
    )
    parser.add_argument(
        "--synthetic_config", default=None, help="SyntheticConfig as JSON or a JSON file (e.g. a training preset)."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.num_samples < 1:
        raise SystemExit("--num_samples must be at least 1.")
    generator = SyntheticTextGenerator(
        tokenizer=MambaOCRTokenizer(charset=args.charset),
        seed=args.seed,
        split=args.split,
        font_dirs=args.font_dirs,
        use_system_fonts=not args.no_system_fonts,
        words=args.words,
        config=synthetic_config_from(args.synthetic_config),
    )
    if args.line_chars is not None and not 1 <= args.line_chars[0] <= args.line_chars[1]:
        raise SystemExit("--line_chars needs 1 <= MIN <= MAX.")
    print(f"Rendering with {generator.num_fonts} fonts and {len(generator.sampler.words)} words.")
    written = write_dataset(
        samples(generator, args.image_format, args.num_workers, tuple(args.line_chars) if args.line_chars else None),
        args.output_dir,
        args.format,
        args.num_samples,
        image_format=args.image_format,
        split=args.split,
    )
    print(f"Wrote {written} samples to {args.output_dir} ({args.format}).")


if __name__ == "__main__":
    main()
