# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Write synthetic text crops to disk in any layout the loaders read.

    python scripts/make_synthetic_dataset.py --output_dir data/synth_lmdb --num_samples 100000 --format lmdb --seed 0
    python scripts/make_synthetic_dataset.py --output_dir data/test_lines --num_samples 2000 --format folder \\
        --charset printable_space --line_chars 10 120 --split test_lines   # held-out text lines (docs/long_lines.md)
    python scripts/make_synthetic_dataset.py --output_dir data/mixed --num_samples 100000 --charset printable_space \\
        --line_p 0.2   # a fifth of the samples are text lines of 10-120 characters
    python scripts/make_synthetic_dataset.py --output_dir data/synth --num_samples 200000 --num_workers 2 \\
        --background_dirs ~/Pictures   # patches of your own photos behind the text

A fixed seed gives byte-identical output on the same machine (same fonts, same library versions), whatever
`--num_workers` is. The fonts are this machine's: system fonts plus the project's font packages (use
`--no_system_fonts` for output that depends only on the installed packages).
"""

from __future__ import annotations

import argparse
import dataclasses

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import SyntheticTextGenerator, write_dataset
from mambaocr_hf.data.cache import rendered_samples
from mambaocr_hf.data.synthetic import SyntheticConfig, synthetic_config_from
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
        help="Write text lines of MIN to MAX label characters: words, numbers and punctuation one space apart, drawn "
        "as one string (SyntheticConfig.line_chars); every sample is a line unless --line_p says otherwise. The "
        "labels have the spaces when --charset has the space (printable_space).",
    )
    parser.add_argument(
        "--line_p",
        type=float,
        default=None,
        help="Chance a sample is a text line (SyntheticConfig.line_p; default: the config's, or 1 with --line_chars).",
    )
    parser.add_argument(
        "--pasted_lines",
        action="store_true",
        help="With --line_chars: lines of word crops pasted side by side at height 32 (at least MIN characters, at "
        "most 2048 px, labels without spaces), as written before text lines were rendered (docs/long_lines.md).",
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


def _config(args: argparse.Namespace) -> SyntheticConfig | None:
    """The generator's config: `--synthetic_config` with `--line_p` and (for rendered lines) `--line_chars` over it."""
    config = synthetic_config_from(args.synthetic_config, args.background_dirs)
    lines = {}
    if args.line_chars is not None and not args.pasted_lines:
        lines = {"line_p": 1.0, "line_chars": tuple(args.line_chars)}
    if args.line_p is not None:
        lines["line_p"] = args.line_p
    if not lines:
        return config
    try:
        return dataclasses.replace(config or SyntheticConfig(), **lines)
    except ValueError as error:
        raise SystemExit(f"Text lines: {error}") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.num_samples < 1:
        raise SystemExit("--num_samples must be at least 1.")
    if args.line_chars is not None and not 1 <= args.line_chars[0] <= args.line_chars[1]:
        raise SystemExit("--line_chars needs 1 <= MIN <= MAX.")
    if args.pasted_lines and (args.line_chars is None or args.line_p is not None):
        raise SystemExit("--pasted_lines takes --line_chars (every sample a pasted line) and no --line_p.")
    generator = SyntheticTextGenerator(
        tokenizer=MambaOCRTokenizer(charset=args.charset),
        seed=args.seed,
        split=args.split,
        font_dirs=args.font_dirs,
        use_system_fonts=not args.no_system_fonts,
        words=args.words,
        config=_config(args),
    )
    print(f"Rendering with {generator.num_fonts} fonts and {len(generator.sampler.words)} words.")
    pasted = tuple(args.line_chars) if args.pasted_lines else None
    written = write_dataset(
        rendered_samples(generator, args.image_format, args.num_workers, pasted),
        args.output_dir,
        args.format,
        args.num_samples,
        image_format=args.image_format,
        split=args.split,
    )
    print(f"Wrote {written} samples to {args.output_dir} ({args.format}).")


if __name__ == "__main__":
    main()
