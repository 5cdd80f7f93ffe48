# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Throughput of the synthetic data source on ONE CPU core (a single process, `torch.set_num_threads(1)`).

    python scripts/benchmark_data.py --num_images 2000

Prints images/s for: rendering alone (`SyntheticTextGenerator.render`, 32-48 px high words, then a 32 px canvas),
the streaming dataset (`load_ocr_dataset("synthetic")`, which adds the `datasets` image encode/decode), and
dataset + collator (`OCRDataCollator`, i.e. model-ready batches). Multiply by the DataLoader workers you give it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch

from mambaocr_hf import MambaOCRProcessor
from mambaocr_hf.data import OCRDataCollator, SyntheticConfig, SyntheticTextGenerator, load_ocr_dataset


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f} images/s ({count} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=2000, help="Images per measurement.")
    parser.add_argument("--charset", default="lowercase_alphanumeric", help="Tokenizer charset.")
    parser.add_argument("--batch_size", type=int, default=64, help="Collator batch size.")
    parser.add_argument("--seed", type=int, default=0, help="Dataset seed.")
    args = parser.parse_args()

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):  # pin to one core so the numbers are per core
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    processor = MambaOCRProcessor.from_defaults(charset=args.charset)
    start = time.perf_counter()
    generator = SyntheticTextGenerator(tokenizer=processor.tokenizer, seed=args.seed)
    print(
        f"setup: {time.perf_counter() - start:.2f} s, {generator.num_fonts} fonts, {len(generator.sampler.words)} words"
    )
    print("single process, torch.set_num_threads(1), one CPU core")

    for index in range(20):  # warm the font caches
        generator.render(index)
    heights = []
    start = time.perf_counter()
    for index in range(args.num_images):
        image, _ = generator.render(1000 + index)
        heights.append(image.height)
    print(f"render only:          {_rate(args.num_images, time.perf_counter() - start)}")
    print(f"  image heights: min {min(heights)}, median {sorted(heights)[len(heights) // 2]}, max {max(heights)} px")

    flat = SyntheticTextGenerator(
        tokenizer=processor.tokenizer, seed=args.seed, config=SyntheticConfig(min_height=32, max_height=32)
    )
    for index in range(20):
        flat.render(index)
    start = time.perf_counter()
    for index in range(args.num_images):
        flat.render(1000 + index)
    print(f"render, 32 px canvas: {_rate(args.num_images, time.perf_counter() - start)}")

    dataset = load_ocr_dataset("synthetic", processor=processor, seed=args.seed)
    rows = iter(dataset)
    next(rows)
    start = time.perf_counter()
    for _ in itertools.islice(rows, args.num_images):
        pass
    print(f"streaming dataset:    {_rate(args.num_images, time.perf_counter() - start)}")

    collator = OCRDataCollator(processor)
    rows = iter(dataset)
    batches = max(1, args.num_images // args.batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        collator(list(itertools.islice(rows, args.batch_size)))
    seconds = time.perf_counter() - start
    print(f"dataset + collator:   {_rate(batches * args.batch_size, seconds)}, dropped {collator.num_dropped}")


if __name__ == "__main__":
    main()
