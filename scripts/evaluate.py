#!/usr/bin/env python
"""Evaluate a MambaOCR checkpoint on any source `load_ocr_dataset` reads (CER, WER, word accuracy, 1-NED).

python scripts/evaluate.py --model runs/demo_cpu --dataset /data/my_crops --max_samples 2000 --bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

import mambaocr_hf  # noqa: F401  (registers the Auto classes)
from mambaocr_hf.data import load_ocr_dataset
from mambaocr_hf.metrics import compute_ocr_metrics, format_metrics_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--dataset", required=True, help="a source for load_ocr_dataset (path, 'synthetic', hub id)")
    parser.add_argument("--split", default=None)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPU with AVX-512 BF16/AMX, or CUDA)")
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    dataset = load_ocr_dataset(args.dataset, split=args.split, processor=processor)
    if args.max_samples:
        dataset = dataset.take(args.max_samples)
    predictions, references, batch = [], [], []
    start = time.perf_counter()

    def flush() -> None:
        inputs = processor(images=[row["image"] for row in batch], return_tensors="pt")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            outputs = model(**inputs)
        predictions.extend(processor.batch_decode(outputs.logits, outputs.frame_lengths))
        references.extend(row["text"] for row in batch)
        batch.clear()

    for row in tqdm(dataset, desc="evaluating", total=args.max_samples):
        batch.append(row)
        if len(batch) == args.batch_size:
            flush()
    if batch:
        flush()
    metrics = compute_ocr_metrics(predictions, references)
    metrics["images_per_second"] = len(predictions) / (time.perf_counter() - start)
    print(f"{args.model} on {args.dataset}" + (f" [{args.split}]" if args.split else ""))
    print(format_metrics_table(metrics))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)


if __name__ == "__main__":
    main()
