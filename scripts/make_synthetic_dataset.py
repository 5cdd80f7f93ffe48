# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Write synthetic text crops to disk in any layout the loaders read.

    python scripts/make_synthetic_dataset.py --output_dir data/synth_lmdb --num_samples 100000 --format lmdb --seed 0
    python scripts/make_synthetic_dataset.py --output_dir data/lines --num_samples 3000 --format folder \
        --line_chars 15 150 --synthetic_config scripts/configs/demo_cpu.json   # text lines of 15-150 characters
    python scripts/make_synthetic_dataset.py --output_dir data/synth --num_samples 200000 --num_workers 2 \
        --background_dirs ~/Pictures   # patches of your own photos behind the text

A fixed seed gives byte-identical output on the same machine (same fonts, same library versions), whatever
`--num_workers` is. The fonts are this machine's: system fonts plus the project's font packages (use
`--no_system_fonts` for output that depends only on the installed packages).
"""

from __future__ import annotations

import argparse

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import SyntheticTextGenerator, write_dataset
from mambaocr_hf.data.cache import rendered_samples
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.data.writers import FORMATS


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
    parser.add_argument(
        "--background_dirs",
        nargs="+",
        default=None,
        help="Folders of your own photos: patches of them become backgrounds (else procedural textures only).",
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
        config=synthetic_config_from(args.synthetic_config, args.background_dirs),
    )
    if args.line_chars is not None and not 1 <= args.line_chars[0] <= args.line_chars[1]:
        raise SystemExit("--line_chars needs 1 <= MIN <= MAX.")
    print(f"Rendering with {generator.num_fonts} fonts and {len(generator.sampler.words)} words.")
    written = write_dataset(
        rendered_samples(
            generator, args.image_format, args.num_workers, tuple(args.line_chars) if args.line_chars else None
        ),
        args.output_dir,
        args.format,
        args.num_samples,
        image_format=args.image_format,
        split=args.split,
    )
    print(f"Wrote {written} samples to {args.output_dir} ({args.format}).")


if __name__ == "__main__":
    main()
