#!/usr/bin/env python
"""Evaluate a MambaOCR checkpoint on any source `load_ocr_dataset` reads (CER, WER, word accuracy, 1-NED), optionally
with beam search, a reliability table of the word score, or on generated long text lines. On text lines (labels of
more than 20 characters on average, or --length_buckets) it also reports line accuracy and CER by label length.

python scripts/evaluate.py --model runs/demo_cpu --dataset /data/my_crops --max_samples 2000 --bf16
python scripts/evaluate.py --model runs/demo_cpu --dataset /data/IIIT5K /data/SVT /data/IC13   # one table, a row each
python scripts/evaluate.py --model runs/demo_cpu --dataset synthetic --split validation --max_samples 2000 --reliability
python scripts/evaluate.py --model runs/demo_cpu --long_lines 50 --min_chars 200   # 200+ characters in 32x2048 px
python scripts/evaluate.py --model runs/lines_cpu --dataset data/test_lines   # held-out lines (docs/long_lines.md)
python scripts/evaluate.py --model runs/demo_cpu --dataset synthetic --split validation --compare_bf16
python scripts/evaluate.py --model runs/demo_cpu --dataset data/split_ic15 --split val --predictions reads.tsv

With --predictions, every read goes to a TSV (source, index, label, prediction, score, whether it is right under the
case-insensitive alphanumeric protocol, the image's own height and width) for looking at the errors.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

import mambaocr_hf  # noqa: F401  (registers the Auto classes)
from mambaocr_hf.configuration_mambaocr import FP32_MARGIN
from mambaocr_hf.data import SyntheticTextGenerator, load_ocr_dataset, reset_skip_counts, skip_counts
from mambaocr_hf.data.lines import render_long_line, render_text_line
from mambaocr_hf.data.sources import split_folders
from mambaocr_hf.data.synthetic import SyntheticConfig, synthetic_config_from
from mambaocr_hf.image_processing_mambaocr import INFERENCE_MAX_WIDTH, width_sorted_batches
from mambaocr_hf.metrics import (
    compute_ocr_metrics,
    format_length_buckets_table,
    format_metrics_table,
    format_reliability_table,
    format_sources_table,
    length_bucket_metrics,
    mean_over_sources,
    normalize_alnum,
    score_reliability,
)

# a set whose labels average more than this many characters is read as text lines (words average ~7, lines ~65)
LINE_SET_MEAN_CHARS = 20


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--long_lines",
        type=int,
        default=0,
        help="evaluate on this many generated long lines: rendered as text with spaces when the model's charset has "
        "the space, else word crops side by side (labels without spaces)",
    )
    parser.add_argument(
        "--min_chars",
        type=int,
        default=200,
        help="characters per generated long line (exactly, for rendered lines; at least, for word crops)",
    )
    parser.add_argument(
        "--length_buckets",
        action="store_true",
        help="report line accuracy and CER per label length (<=20, 21-40, 41-80, >80 characters); without it, "
        f"they are reported for long lines and for sets whose labels average more than {LINE_SET_MEAN_CHARS} "
        "characters",
    )
    parser.add_argument(
        "--max_width",
        type=int,
        default=None,
        help="squeeze images wider than this (at height 32) to it, as the image processor does; default: the "
        f"checkpoint's own width, and for --long_lines at least {INFERENCE_MAX_WIDTH} (to measure what squeezing costs, "
        "evaluate the same lines at several widths)",
    )
    parser.add_argument(
        "--synthetic_config",
        default=None,
        help="SyntheticConfig of the synthetic source and long lines: JSON, or a JSON file (a training preset's "
        "`synthetic_config` is used, so `scripts/configs/synthetic_light.json` evaluates on the light distribution)",
    )
    parser.add_argument("--dataset_seed", type=int, default=0, help="seed of the synthetic source")
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    parser.add_argument(
        "--predictions",
        default=None,
        help="write every read here as TSV: source, index, label, prediction, score, correct (case-insensitive "
        "alphanumerics), height and width of the image",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the combinations that cannot work refused (argparse's exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.dataset is None) == (args.long_lines == 0):
        parser.error("give either --dataset or --long_lines")
    if args.compare_bf16 and args.bf16:
        parser.error("--compare_bf16 runs float32 and bf16 side by side: leave out --bf16")
    if not args.fp32_margin >= 0:
        parser.error("--fp32_margin must be >= 0 (0: never re-run in float32)")
    if args.long_lines and args.min_chars < 1:
        parser.error("--min_chars must be at least 1")
    for dataset in args.dataset or []:
        if args.split is None and split_folders(dataset):
            parser.error(
                f"{dataset} has split folders ({', '.join(split_folders(dataset))}): pass --split to say which "
                "to evaluate (without it every split would be read, training data included)"
            )
    if args.dataset and len(args.dataset) > 1 and (args.compare_bf16 or args.reliability):
        parser.error("--compare_bf16 and --reliability take one --dataset")
    for flag, path in (("--output", args.output), ("--predictions", args.predictions)):
        # refused now, not after the whole evaluation has run
        if path is not None and not Path(path).resolve().parent.is_dir():
            parser.error(f"{flag} {path}: the folder {Path(path).resolve().parent} does not exist; create it first")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    synthetic_config = synthetic_config_from(args.synthetic_config)
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    metrics = evaluate(args, model, processor, synthetic_config)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=2)


def evaluate(args: argparse.Namespace, model, processor, synthetic_config) -> dict:
    """The generated long lines, one source, or several sources with a table of them all and their mean."""
    if args.predictions:
        with open(args.predictions, "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle, delimiter="\t").writerow(PREDICTION_COLUMNS)
    if args.max_width is not None:
        processor.image_processor.max_width = args.max_width
    if args.long_lines:
        return evaluate_source(args, model, processor, None, synthetic_config)
    if len(args.dataset) == 1:
        return evaluate_source(args, model, processor, args.dataset[0], synthetic_config)
    metrics = {"sources": {}}
    for source in args.dataset:
        reset_skip_counts()
        metrics["sources"][source] = evaluate_source(args, model, processor, source, synthetic_config)
        print()
    metrics["mean"] = mean_over_sources(list(metrics["sources"].values()))
    print(format_sources_table(args.model, metrics["sources"], metrics["mean"]))
    return metrics


def evaluate_source(args, model, processor, source_name: str | None, synthetic_config) -> dict:
    """Metrics of `model` on one source (`None`: the generated long lines), printed as they are computed."""
    if args.long_lines:
        rows, total, source = _long_line_rows(args, processor, synthetic_config)
    else:
        rows, total, source = _source_rows(args, processor, source_name, synthetic_config)
    start = time.perf_counter()
    reads = _read_all(args, model, processor, rows, total)
    metrics = _metrics(args, reads, start)
    if args.predictions:
        _write_predictions(args.predictions, source, reads)
    print(f"{args.model} on {source}" + (f", beam {args.beam_width}" if args.beam_width > 1 else ""))
    print(format_metrics_table({k: v for k, v in metrics.items() if k != "skipped"}))
    if metrics["skipped"]:
        print(
            f"{metrics['num_skipped']} samples could not be evaluated and are not in the metrics: "
            + ", ".join(f"{count} {reason}" for reason, count in sorted(metrics["skipped"].items()))
        )
    if "line_accuracy" in metrics:
        metrics["length_buckets"] = length_bucket_metrics(reads.predictions, reads.references)
        print("\nLine accuracy (every character right) and CER by label length")
        print(format_length_buckets_table(metrics["length_buckets"]))
    if args.compare_bf16:
        metrics["bf16_comparison"] = _compare_bf16(args, reads, metrics)
    if args.reliability:
        rows = score_reliability(reads.predictions, reads.references, reads.scores)
        print("\nWord accuracy against the word score (reject reads below a threshold to trade coverage for accuracy)")
        print(format_reliability_table(rows))
        metrics["reliability"] = rows
    return metrics


def _long_line_rows(args, processor, synthetic_config):
    """Held-out renders (split "long_lines") squeezed to `--max_width` as the image processor would; the processor
    is let read that wide. With the space in the charset, text lines of `--min_chars` characters drawn as one string
    (`render_text_line`); without it, word crops side by side up to `--min_chars` or more (`render_long_line`, the
    labels run the words together). Returns the rows, their number and the source's name."""
    rendered = " " in processor.tokenizer.charset
    if rendered:
        chars = (args.min_chars, args.min_chars)
        synthetic_config = dataclasses.replace(synthetic_config or SyntheticConfig(), line_p=1.0, line_chars=chars)
    generator = SyntheticTextGenerator(
        tokenizer=processor.tokenizer, seed=args.dataset_seed, split="long_lines", config=synthetic_config
    )
    if args.max_width is None:  # generated lines are read at least as wide as a saved checkpoint reads
        processor.image_processor.max_width = max(processor.image_processor.max_width, INFERENCE_MAX_WIDTH)
    width = processor.image_processor.max_width

    def lines():
        for index in range(args.long_lines):
            if rendered:
                image, text = render_text_line(generator, index, max_width=width)
            else:
                image, text = render_long_line(generator, index, args.min_chars, max_width=width)
            yield {"image": image, "text": text}

    kind = "text lines" if rendered else "lines of word crops"
    return lines(), args.long_lines, f"{args.long_lines} generated {kind} of {args.min_chars} characters"


def _source_rows(args, processor, source_name: str, synthetic_config):
    """The rows of one `load_ocr_dataset` source (at most `--max_samples`), their number if known, and its name."""
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
    return dataset, args.max_samples, source_name + (f" [{args.split}]" if args.split else "")


@dataclass
class _Reads:
    """What the model read, row by row, and the time it took."""

    predictions: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # the images' own (width, height)
    bf16_predictions: list[str] = field(default_factory=list)  # with --compare_bf16
    model_seconds: float = 0.0
    bf16_seconds: float = 0.0
    reruns: int = 0  # images bf16 re-ran in float32


# rows are read this many batches at a time, each pool sorted by width (as training's WidthBucketedDataset does)
POOL_BATCHES = 16


def _read_all(args, model, processor, rows, total) -> _Reads:
    """Recognise `rows` in batches of `--batch_size`, with a progress bar; with `--compare_bf16`, each batch twice.

    Rows are read `POOL_BATCHES` batches at a time, each pool sorted by the width the model sees, so that a batch pads
    to a width near its own rather than to the widest of 64 rows in arrival order (words and 2,000-px lines mixed
    pad most batches to a line); the reads are kept in the rows' own order.
    """
    reads, pool = _Reads(), []
    progress = tqdm(desc="evaluating", total=total)

    def recognise(inputs: dict, bf16: bool):
        with torch.no_grad():
            if bf16:
                outputs = model.forward_bf16(**inputs, fp32_margin=args.fp32_margin)
                reads.reruns += int(outputs.fp32_rerun.sum())
            else:
                outputs = model(**inputs)
        return processor.batch_decode(
            outputs.logits, outputs.frame_lengths, output_char_details=True, beam_width=args.beam_width
        )

    def read_pool() -> None:
        sizes = [processor.image_processor.target_width(*row["image"].size) for row in pool]
        texts, scores, widths, bf16_texts = [None] * len(pool), [None] * len(pool), [None] * len(pool), {}
        for indices in width_sorted_batches(sizes, args.batch_size):
            inputs = processor(images=[pool[i]["image"] for i in indices], return_tensors="pt")
            began = time.perf_counter()
            decoded = recognise(inputs, args.bf16)
            reads.model_seconds += time.perf_counter() - began
            if args.compare_bf16:
                began = time.perf_counter()
                bf16_texts.update(zip(indices, recognise(inputs, True).text))
                reads.bf16_seconds += time.perf_counter() - began
            for index, text, score, width in zip(
                indices, decoded.text, decoded.scores, inputs["pixel_mask"].sum(-1).tolist()
            ):
                texts[index], scores[index], widths[index] = text, score, width
            progress.update(len(indices))
        reads.predictions.extend(texts)
        reads.scores.extend(scores)
        reads.widths.extend(widths)
        reads.bf16_predictions.extend(bf16_texts[i] for i in sorted(bf16_texts))
        reads.sizes.extend(row["image"].size for row in pool)
        reads.references.extend(row["text"] for row in pool)
        pool.clear()

    for row in rows:
        pool.append(row)
        if len(pool) == args.batch_size * POOL_BATCHES:
            read_pool()
    if pool:
        read_pool()
    progress.close()
    return reads


PREDICTION_COLUMNS = ("source", "index", "label", "prediction", "score", "correct", "height", "width")


def _write_predictions(path: str, source: str, reads: _Reads) -> None:
    """Append the reads of one source to the `--predictions` TSV (its header is written first, by `evaluate`)."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        rows = zip(reads.references, reads.predictions, reads.scores, reads.sizes)
        for index, (label, prediction, score, (width, height)) in enumerate(rows):
            correct = int(normalize_alnum(prediction) == normalize_alnum(label))
            writer.writerow([source, index, label, prediction, f"{score:.4f}", correct, height, width])


def _metrics(args, reads: _Reads, start: float) -> dict:
    """The OCR metrics of `reads`, the samples the data pipeline skipped, speed (since `start`) and sizes."""
    metrics = compute_ocr_metrics(reads.predictions, reads.references)
    mean_chars = sum(len(r) for r in reads.references) / max(len(reads.references), 1)
    if args.length_buckets or args.long_lines or mean_chars > LINE_SET_MEAN_CHARS:
        metrics["line_accuracy"] = metrics["word_accuracy"]  # a text line is right when every character is
    skipped = dict(sum((Counter(counts) for counts in skip_counts().values()), Counter()))
    metrics["num_skipped"] = sum(skipped.values())
    metrics["skipped"] = skipped
    metrics["images_per_second"] = len(reads.predictions) / (time.perf_counter() - start)
    metrics["model_ms_per_image"] = 1000 * reads.model_seconds / max(len(reads.predictions), 1)
    if args.bf16:
        metrics["fp32_reruns"] = reads.reruns
    metrics["mean_label_length"] = mean_chars
    metrics["mean_width_px"] = sum(reads.widths) / max(len(reads.widths), 1)
    return metrics


def _compare_bf16(args, reads: _Reads, metrics: dict) -> dict:
    """bf16 autocast's reads against float32's (`metrics`): same text, CER, re-runs and time; printed too."""
    predictions, references = reads.predictions, reads.references
    bf16_metrics = compute_ocr_metrics(reads.bf16_predictions, references)
    same = sum(a == b for a, b in zip(predictions, reads.bf16_predictions)) / max(len(predictions), 1)
    bf16_ms = 1000 * reads.bf16_seconds / max(len(predictions), 1)
    print(
        f"\nbf16 autocast (near-ties re-run in float32 at margin {args.fp32_margin}: {reads.reruns} of "
        f"{len(predictions)} images) against float32: identical text on {same:.2%}; CER "
        f"{bf16_metrics['cer']:.4f} against {metrics['cer']:.4f} (difference "
        f"{bf16_metrics['cer'] - metrics['cer']:+.4f}); model time {bf16_ms:.2f} against "
        f"{metrics['model_ms_per_image']:.2f} ms per image"
    )
    return {
        "same_text": same,
        "cer": bf16_metrics["cer"],
        "cer_delta": bf16_metrics["cer"] - metrics["cer"],
        "fp32_margin": args.fp32_margin,
        "fp32_reruns": reads.reruns,
        "model_ms_per_image": bf16_ms,
    }


if __name__ == "__main__":
    main()
