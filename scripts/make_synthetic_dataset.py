# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Write synthetic text crops to disk in any layout the loaders read.

    python scripts/make_synthetic_dataset.py --output_dir data/synth_lmdb --num_samples 100000 --format lmdb --seed 0

A fixed seed gives byte-identical output on the same machine (same fonts, same library versions), whatever
`--num_workers` is. The fonts are this machine's: system fonts plus the project's font packages (use
`--no_system_fonts` for output that depends only on the installed packages).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Iterator
from functools import partial

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import SyntheticTextGenerator, write_dataset
from mambaocr_hf.data.writers import FORMATS

_GENERATOR: SyntheticTextGenerator | None = None


def _init_worker(generator: SyntheticTextGenerator) -> None:
    global _GENERATOR
    _GENERATOR = generator


def _encode(index: int, image_format: str) -> tuple[bytes, str]:
    return _GENERATOR.encode(index, image_format)


def samples(generator: SyntheticTextGenerator, image_format: str, num_workers: int) -> Iterator[tuple[bytes, str]]:
    """Encoded samples 0, 1, 2, ... in order (rendered by `num_workers` processes when > 1)."""
    indices = iter(range(sys.maxsize))
    if num_workers <= 1:
        yield from (generator.encode(index, image_format) for index in indices)
        return
    with multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (generator,)) as pool:
        yield from pool.imap(partial(_encode, image_format=image_format), indices, chunksize=64)


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
    )
    print(f"Rendering with {generator.num_fonts} fonts and {len(generator.sampler.words)} words.")
    written = write_dataset(
        samples(generator, args.image_format, args.num_workers),
        args.output_dir,
        args.format,
        args.num_samples,
        image_format=args.image_format,
        split=args.split,
    )
    print(f"Wrote {written} samples to {args.output_dir} ({args.format}).")


if __name__ == "__main__":
    main()
