#!/usr/bin/env python
"""Carve a held-out split out of a folder of labelled crops, the same way on every machine.

    python scripts/split_labels.py --source /data/crops --output data/crops_split --val_fraction 0.1

`--source` holds a `labels.tsv` (`image path<TAB>label` per line, paths relative to it). `--output` gets
`train/labels.tsv` and `val/labels.tsv` whose paths point to the source's images (absolute paths: nothing is
copied), ready for `scripts/train.py --dataset OUT/train --eval_dataset OUT --eval_split val`. A line goes to `val`
when a hash of its image path and `--seed` falls under `--val_fraction`: the split does not depend on the file's
order or on which other lines it holds, so adding crops later never moves an old one between splits.
"""

from __future__ import annotations

import argparse
import os
import zlib
from pathlib import Path


def is_held_out(relative_path: str, fraction: float, seed: int) -> bool:
    """Whether the line of `relative_path` belongs to the held-out split."""
    return zlib.crc32(f"{seed}:{relative_path}".encode()) / 2**32 < fraction


def split_labels(source: str | os.PathLike, output: str | os.PathLike, val_fraction: float, seed: int = 0) -> dict:
    """Write `output/{train,val}/labels.tsv`; returns the number of lines in each."""
    source = Path(source).expanduser().resolve()
    labels = source / "labels.tsv"
    if not labels.is_file():
        raise FileNotFoundError(f"No labels.tsv in {source}: give the folder that holds it.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {val_fraction}.")
    counts = {"train": 0, "val": 0}
    output = Path(output)
    handles = {}
    for split in counts:
        (output / split).mkdir(parents=True, exist_ok=True)
        handles[split] = open(output / split / "labels.tsv", "w", encoding="utf-8", newline="\n")  # noqa: SIM115
    try:
        with open(labels, encoding="utf-8", newline="") as lines:
            for line in lines.read().splitlines():
                relative, tab, label = line.partition("\t")
                if not tab or not relative.strip():
                    continue
                split = "val" if is_held_out(relative, val_fraction, seed) else "train"
                handles[split].write(f"{source / relative}\t{label}\n")
                counts[split] += 1
    finally:
        for handle in handles.values():
            handle.close()
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="Folder with labels.tsv.")
    parser.add_argument("--output", required=True, help="Folder to write train/ and val/ into.")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = split_labels(args.source, args.output, args.val_fraction, args.seed)
    print(f"{args.output}: {counts['train']} train, {counts['val']} val lines.")
    return counts


if __name__ == "__main__":
    main()
