#!/usr/bin/env python
"""Evaluate a MambaOCR checkpoint on any source `load_ocr_dataset` reads (CER, WER, word accuracy, 1-NED), optionally
with beam search, a reliability table of the word score, or on generated long text lines.

python scripts/evaluate.py --model runs/demo_cpu --dataset /data/my_crops --max_samples 2000 --bf16
python scripts/evaluate.py --model runs/demo_cpu --dataset /data/IIIT5K /data/SVT /data/IC13   # one table, a row each
python scripts/evaluate.py --model runs/demo_cpu --dataset synthetic --split validation --max_samples 2000 --reliability
python scripts/evaluate.py --model runs/demo_cpu --long_lines 50 --min_chars 200   # 200+ characters in 32x2048 px
python scripts/evaluate.py --model runs/demo_cpu --dataset synthetic --split validation --compare_bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter

import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

import mambaocr_hf  # noqa: F401  (registers the Auto classes)
from mambaocr_hf.configuration_mambaocr import FP32_MARGIN
from mambaocr_hf.data import SyntheticTextGenerator, load_ocr_dataset, reset_skip_counts, skip_counts
from mambaocr_hf.data.lines import render_long_line
from mambaocr_hf.data.sources import split_folders
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.metrics import (
    compute_ocr_metrics,
    format_metrics_table,
    format_reliability_table,
    format_sources_table,
    mean_over_sources,
    score_reliability,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=None,
        help="sources for load_ocr_dataset (path, 'synthetic', hub id); several print one table, a row per source "
        "plus their mean",
    )
    parser.add_argument("--split", default=None)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast (CPU with AVX-512 BF16/AMX, or CUDA), near-ties re-run in float32 (see --fp32_margin)",
    )
    parser.add_argument(
        "--fp32_margin",
        type=float,
        default=FP32_MARGIN,
        help="bf16: images with a frame whose two best logits are closer than this run again in float32 (0: never)",
    )
    parser.add_argument(
        "--compare_bf16",
        action="store_true",
        help="also run every batch in bf16 autocast: report how often its decoded text differs from float32's, and "
        "both CERs",
    )
    parser.add_argument("--beam_width", type=int, default=1, help="1: greedy; more: CTC prefix beam search")
    parser.add_argument("--reliability", action="store_true", help="print accuracy against the word score")
    parser.add_argument("--long_lines", type=int, default=0, help="evaluate on this many generated long lines")
    parser.add_argument("--min_chars", type=int, default=200, help="characters per generated long line")
    parser.add_argument("--max_width", type=int, default=2048, help="long lines wider than this are squeezed")
    parser.add_argument(
        "--synthetic_config",
        default=None,
        help="SyntheticConfig of the synthetic source and long lines: JSON, or a JSON file (a training preset's "
        "`synthetic_config` is used, so `scripts/configs/demo_cpu.json` evaluates on the demo's distribution)",
    )
    parser.add_argument("--dataset_seed", type=int, default=0, help="seed of the synthetic source")
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    args = parser.parse_args()
    if (args.dataset is None) == (args.long_lines == 0):
        parser.error("give either --dataset or --long_lines")
    if args.compare_bf16 and args.bf16:
        parser.error("--compare_bf16 runs float32 and bf16 side by side: leave out --bf16")
    if not args.fp32_margin >= 0:
        parser.error("--fp32_margin must be >= 0 (0: never re-run in float32)")
    for dataset in args.dataset or []:
        if args.split is None and split_folders(dataset):
            parser.error(
                f"{dataset} has split folders ({', '.join(split_folders(dataset))}): pass --split to say which "
                "to evaluate (without it every split would be read, training data included)"
            )
    if args.dataset and len(args.dataset) > 1 and (args.compare_bf16 or args.reliability):
        parser.error("--compare_bf16 and --reliability take one --dataset")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    synthetic_config = synthetic_config_from(args.synthetic_config)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    if args.long_lines:
        metrics = evaluate_source(args, model, processor, None, synthetic_config)
    elif len(args.dataset) == 1:
        metrics = evaluate_source(args, model, processor, args.dataset[0], synthetic_config)
    else:
        metrics = {"sources": {}}
        for source in args.dataset:
            reset_skip_counts()
            metrics["sources"][source] = evaluate_source(args, model, processor, source, synthetic_config)
            print()
        metrics["mean"] = mean_over_sources(list(metrics["sources"].values()))
        print(format_sources_table(args.model, metrics["sources"], metrics["mean"]))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)


def evaluate_source(args, model, processor, source_name: str | None, synthetic_config) -> dict:
    """Metrics of `model` on one source (`None`: the generated long lines), printed as they are computed."""
    if args.long_lines:
        # held-out renders (split "long_lines"), squeezed to max_width like the image processor would
        generator = SyntheticTextGenerator(
            tokenizer=processor.tokenizer, seed=args.dataset_seed, split="long_lines", config=synthetic_config
        )
        processor.image_processor.max_width = max(processor.image_processor.max_width, args.max_width)

        def lines():
            for index in range(args.long_lines):
                image, text = render_long_line(generator, index, args.min_chars, max_width=args.max_width)
                yield {"image": image, "text": text}

        dataset, total, source = lines(), args.long_lines, f"{args.long_lines} generated long lines"
    else:
        options = {"config": synthetic_config, "seed": args.dataset_seed} if source_name == "synthetic" else {}
        # the training filters would leave out hard samples (too narrow for CTC to align the label, extreme aspect
        # ratio) and report metrics on the easy rest: here they are read, and count as the errors they are; only
        # samples that cannot be evaluated (unreadable image, empty label, none of its characters in the charset) are
        # skipped, and counted in the report
        dataset = load_ocr_dataset(
            source_name,
            split=args.split,
            processor=processor,
            check_ctc=False,
            min_aspect_ratio=0.0,
            max_aspect_ratio=float("inf"),
            **options,
        )
        if args.max_samples:
            dataset = dataset.take(args.max_samples)
        total, source = args.max_samples, source_name + (f" [{args.split}]" if args.split else "")
    predictions, references, scores, widths, batch, bf16_predictions = [], [], [], [], [], []
    model_seconds = 0.0
    start = time.perf_counter()

    bf16_seconds, reruns = 0.0, 0

    def recognise(inputs: dict, bf16: bool):
        nonlocal reruns
        with torch.no_grad():
            if bf16:
                outputs = model.forward_bf16(**inputs, fp32_margin=args.fp32_margin)
                reruns += int(outputs.fp32_rerun.sum())
            else:
                outputs = model(**inputs)
        return processor.batch_decode(
            outputs.logits, outputs.frame_lengths, output_char_details=True, beam_width=args.beam_width
        )

    def flush() -> None:
        nonlocal model_seconds, bf16_seconds
        inputs = processor(images=[row["image"] for row in batch], return_tensors="pt")
        began = time.perf_counter()
        decoded = recognise(inputs, args.bf16)
        model_seconds += time.perf_counter() - began
        if args.compare_bf16:
            began = time.perf_counter()
            bf16_predictions.extend(recognise(inputs, True).text)
            bf16_seconds += time.perf_counter() - began
        predictions.extend(decoded.text)
        scores.extend(decoded.scores)
        widths.extend(inputs["pixel_mask"].sum(-1).tolist())
        references.extend(row["text"] for row in batch)
        batch.clear()

    for row in tqdm(dataset, desc="evaluating", total=total):
        batch.append(row)
        if len(batch) == args.batch_size:
            flush()
    if batch:
        flush()
    metrics = compute_ocr_metrics(predictions, references)
    skipped = dict(sum((Counter(counts) for counts in skip_counts().values()), Counter()))
    metrics["num_skipped"] = sum(skipped.values())
    metrics["skipped"] = skipped
    metrics["images_per_second"] = len(predictions) / (time.perf_counter() - start)
    metrics["model_ms_per_image"] = 1000 * model_seconds / max(len(predictions), 1)
    if args.bf16:
        metrics["fp32_reruns"] = reruns
    metrics["mean_label_length"] = sum(len(r) for r in references) / max(len(references), 1)
    metrics["mean_width_px"] = sum(widths) / max(len(widths), 1)
    print(f"{args.model} on {source}" + (f", beam {args.beam_width}" if args.beam_width > 1 else ""))
    print(format_metrics_table({k: v for k, v in metrics.items() if k != "skipped"}))
    if skipped:
        print(
            f"{metrics['num_skipped']} samples could not be evaluated and are not in the metrics: "
            + ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        )
    if args.compare_bf16:
        bf16_metrics = compute_ocr_metrics(bf16_predictions, references)
        same = sum(a == b for a, b in zip(predictions, bf16_predictions)) / max(len(predictions), 1)
        bf16_ms = 1000 * bf16_seconds / max(len(predictions), 1)
        metrics["bf16_comparison"] = {
            "same_text": same,
            "cer": bf16_metrics["cer"],
            "cer_delta": bf16_metrics["cer"] - metrics["cer"],
            "fp32_margin": args.fp32_margin,
            "fp32_reruns": reruns,
            "model_ms_per_image": bf16_ms,
        }
        print(
            f"\nbf16 autocast (near-ties re-run in float32 at margin {args.fp32_margin}: {reruns} of "
            f"{len(predictions)} images) against float32: identical text on {same:.2%}; CER "
            f"{bf16_metrics['cer']:.4f} against {metrics['cer']:.4f} (difference "
            f"{bf16_metrics['cer'] - metrics['cer']:+.4f}); model time {bf16_ms:.2f} against "
            f"{metrics['model_ms_per_image']:.2f} ms per image"
        )
    if args.reliability:
        rows = score_reliability(predictions, references, scores)
        print("\nWord accuracy against the word score (reject reads below a threshold to trade coverage for accuracy)")
        print(format_reliability_table(rows))
        metrics["reliability"] = rows
    return metrics


if __name__ == "__main__":
    main()
