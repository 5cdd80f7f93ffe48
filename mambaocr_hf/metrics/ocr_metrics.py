# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Text-recognition metrics in plain Python: CER, WER, word accuracy (exact and the scene-text case-insensitive
alphanumeric protocol) and 1 - NED, the same by label length for text lines, plus plain-text tables to print them."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from transformers.utils import logging

try:
    from rapidfuzz.distance import Levenshtein as _rapidfuzz_levenshtein
except ImportError:  # pragma: no cover - rapidfuzz is a dependency; the pure-Python path gives identical results
    _rapidfuzz_levenshtein = None

logger = logging.get_logger(__name__)

METRIC_NAMES = ("cer", "wer", "word_accuracy", "word_accuracy_ci_alnum", "one_minus_ned", "num_samples")
# upper bounds of the label-length buckets of text lines: <= 20, 21-40, 41-80, > 80 characters
LENGTH_BUCKETS = (20, 40, 80)
_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def _python_edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit-cost insertions, deletions, substitutions) with two rows of dynamic programming."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b)))
        previous = current
    return previous[-1]


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable], *, use_rapidfuzz: bool = True) -> int:
    """Levenshtein distance between two strings (per character) or two sequences of tokens.

    Args:
        a: A string or a sequence of hashable tokens (e.g. words).
        b: The same kind as `a`.
        use_rapidfuzz: Use rapidfuzz's C++ implementation when it is installed; the result is the same.

    Returns:
        The minimum number of insertions, deletions and substitutions that turn `a` into `b`.
    """
    if use_rapidfuzz and _rapidfuzz_levenshtein is not None:
        return int(_rapidfuzz_levenshtein.distance(a, b))
    return _python_edit_distance(a, b)


def normalize_alnum(text: str) -> str:
    """The scene-text benchmark label protocol (clovaai deep-text-recognition-benchmark, PARSeq): lower-case, then
    drop every character outside `[0-9a-z]`."""
    return _NOT_ALNUM.sub("", text.lower())


def _check_inputs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} predictions and "
            f"{len(references)} references"
        )
    if len(predictions) == 0:
        raise ValueError("predictions and references are empty: there is nothing to evaluate")
    for name, texts in (("predictions", predictions), ("references", references)):
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"{name}[{index}] is a {type(text).__name__}, expected a str")


def compute_ocr_metrics(
    predictions: Sequence[str], references: Sequence[str], *, use_rapidfuzz: bool = True
) -> dict[str, float]:
    """Corpus metrics for text recognition.

    - `cer`: total character edit distance / total reference characters (as `jiwer.cer`, but strings are not
      stripped). When every reference is empty the denominator is 1, as in jiwer: the CER is then the number of
      inserted characters, 0.0 if every prediction is empty too.
    - `wer`: the same over whitespace-separated words (`str.split()`).
    - `word_accuracy`: fraction of predictions equal to their reference.
    - `word_accuracy_ci_alnum`: the same after `normalize_alnum` on both sides (two strings that normalize to ""
      match).
    - `one_minus_ned`: 1 - mean of edit_distance / max(len(prediction), len(reference)), the ICDAR 2019 ReCTS
      normalized edit distance (0 for two empty strings).
    - `num_samples`: the number of pairs.

    Args:
        predictions: Decoded model outputs.
        references: Ground-truth labels, one per prediction.
        use_rapidfuzz: Use rapidfuzz for edit distances when it is installed (same results, faster).

    Returns:
        A dict with exactly the keys of `METRIC_NAMES`.

    Raises:
        ValueError: If the lists differ in length, are empty, or hold something other than strings.
    """
    counts = corpus_counts(predictions, references, use_rapidfuzz=use_rapidfuzz)
    if counts.char_total == 0:
        logger.warning("Every reference is empty: the CER and WER count errors instead of dividing by 0 characters")
    return {
        "cer": counts.cer,
        "wer": counts.wer,
        "word_accuracy": counts.word_accuracy,
        "word_accuracy_ci_alnum": counts.word_accuracy_ci_alnum,
        "one_minus_ned": 1.0 - counts.ned,
        "num_samples": counts.count,
    }


@dataclass
class OCRCounts:
    """Corpus sums behind the metrics of [`compute_ocr_metrics`] (and of the shipped `evaluate` modules)."""

    char_errors: int = 0
    char_total: int = 0
    word_errors: int = 0
    word_total: int = 0
    exact: int = 0
    alnum: int = 0
    ned_sum: float = 0.0
    count: int = 0

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.char_total, 1)

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.word_total, 1)

    @property
    def word_accuracy(self) -> float:
        return self.exact / self.count

    @property
    def word_accuracy_ci_alnum(self) -> float:
        return self.alnum / self.count

    @property
    def ned(self) -> float:
        return self.ned_sum / self.count


def corpus_counts(predictions: Sequence[str], references: Sequence[str], *, use_rapidfuzz: bool = True) -> OCRCounts:
    """Edit distances, lengths and matches of a corpus, summed in one pass (inputs checked as in
    [`compute_ocr_metrics`])."""
    _check_inputs(predictions, references)
    counts = OCRCounts(count=len(references))
    for prediction, reference in zip(predictions, references):
        distance = edit_distance(prediction, reference, use_rapidfuzz=use_rapidfuzz)
        counts.char_errors += distance
        counts.char_total += len(reference)
        reference_words = reference.split()
        counts.word_errors += edit_distance(prediction.split(), reference_words, use_rapidfuzz=use_rapidfuzz)
        counts.word_total += len(reference_words)
        counts.exact += prediction == reference
        counts.alnum += normalize_alnum(prediction) == normalize_alnum(reference)
        longest = max(len(prediction), len(reference))
        if longest:
            counts.ned_sum += distance / longest
    return counts


def length_bucket_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    bounds: Sequence[int] = LENGTH_BUCKETS,
    *,
    use_rapidfuzz: bool = True,
) -> list[dict]:
    """Line accuracy and CER by the length of the reference, to see how recognition holds up along long lines.

    Args:
        predictions: Decoded model outputs.
        references: Ground-truth labels, one per prediction.
        bounds: Increasing upper bounds of the buckets in characters; the defaults give `<=20`, `21-40`, `41-80`
            and `>80`.
        use_rapidfuzz: Use rapidfuzz for edit distances when it is installed (same results, faster).

    Returns:
        One dict per bucket, in order: `bucket` (its name), `min_chars`, `max_chars` (`None` for the last),
        `num_samples`, `line_accuracy` (every character right: the exact-match accuracy) and `cer` (corpus CER of the
        bucket). An empty bucket's metrics are `None` (JSON `null`).

    Raises:
        ValueError: If `bounds` is not increasing and positive, or the inputs are invalid (as in
            [`compute_ocr_metrics`]).
    """
    _check_inputs(predictions, references)
    bounds = [int(bound) for bound in bounds]
    if not bounds or bounds[0] < 1 or any(a >= b for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"`bounds` must be increasing positive lengths, e.g. {list(LENGTH_BUCKETS)}; got {bounds}.")
    edges = [(1 if i == 0 else bounds[i - 1] + 1, bound) for i, bound in enumerate(bounds)] + [(bounds[-1] + 1, None)]
    rows = []
    for low, high in edges:
        pairs = [
            (prediction, reference)
            for prediction, reference in zip(predictions, references)
            if (low == 1 or len(reference) >= low) and (high is None or len(reference) <= high)
        ]
        name = f"<={high}" if low == 1 else (f">{low - 1}" if high is None else f"{low}-{high}")
        row = {"bucket": name, "min_chars": low, "max_chars": high, "num_samples": len(pairs)}
        if pairs:
            counts = corpus_counts(*zip(*pairs), use_rapidfuzz=use_rapidfuzz)
            row.update(line_accuracy=counts.word_accuracy, cer=counts.cer)
        else:
            row.update(line_accuracy=None, cer=None)
        rows.append(row)
    return rows


def format_length_buckets_table(rows: Sequence[Mapping]) -> str:
    """A markdown table of [`length_bucket_metrics`]'s rows: characters, lines, line accuracy, CER."""
    lines = ["| characters | lines | line accuracy | CER |", "|---|---:|---:|---:|"]
    for row in rows:
        accuracy = "—" if row["line_accuracy"] is None else f"{row['line_accuracy']:.2%}"
        cer = "—" if row["cer"] is None else f"{row['cer']:.4f}"
        lines.append(f"| {row['bucket']} | {row['num_samples']} | {accuracy} | {cer} |")
    return "\n".join(lines)


def format_metrics_table(metrics: Mapping[str, float], *, precision: int = 4) -> str:
    """An aligned plain-text `metric | value` table, in the order of `metrics`.

    Args:
        metrics: Metric names and values, e.g. the output of `compute_ocr_metrics`.
        precision: Decimal places for floats; integers (and integral counts such as `num_samples`) print whole.

    Returns:
        The table as one string with a header, a rule and a row per metric (no trailing newline).
    """

    def _format(name: str, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, int) or (name.startswith("num_") and float(value).is_integer()):
            return str(int(value))
        return f"{value:.{precision}f}"

    rows = [(str(name), _format(str(name), value)) for name, value in metrics.items()]
    name_width = max([len("metric")] + [len(name) for name, _ in rows])
    value_width = max([len("value")] + [len(value) for _, value in rows])
    lines = [f"{'metric':<{name_width}} | {'value':>{value_width}}", f"{'-' * name_width}-+-{'-' * value_width}"]
    lines += [f"{name:<{name_width}} | {value:>{value_width}}" for name, value in rows]
    return "\n".join(lines)


SOURCES_TABLE_COLUMNS = (
    ("num_samples", "images", "{:d}"),
    ("word_accuracy_ci_alnum", "word acc. (ci alnum)", "{:.2%}"),
    ("word_accuracy", "exact case", "{:.2%}"),
    ("cer", "CER", "{:.4f}"),
    ("num_skipped", "skipped", "{:d}"),
)


def mean_over_sources(results: Sequence[Mapping]) -> dict:
    """The unweighted mean over sources (each benchmark counts once, as the literature averages them)."""
    mean = {key: sum(result.get(key, 0) for result in results) / len(results) for key, _, _ in SOURCES_TABLE_COLUMNS}
    mean["num_samples"] = sum(result["num_samples"] for result in results)
    mean["num_skipped"] = sum(result.get("num_skipped", 0) for result in results)
    return mean


def format_sources_table(title: str, sources: Mapping[str, Mapping], mean: Mapping) -> str:
    """A markdown table: a row per source and their mean (word accuracy under the standard protocol, exact-case
    accuracy, CER)."""
    lines = [title, "| source | " + " | ".join(heading for _, heading, _ in SOURCES_TABLE_COLUMNS) + " |"]
    lines.append("|---|" + "---:|" * len(SOURCES_TABLE_COLUMNS))
    for name, result in [*sources.items(), ("mean", mean)]:
        cells = [
            form.format(int(result.get(key, 0)) if form == "{:d}" else result[key])
            for key, _, form in SOURCES_TABLE_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_reliability(
    predictions: Sequence[str],
    references: Sequence[str],
    scores: Sequence[float],
    thresholds: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
) -> list[dict[str, float]]:
    """How exact-match accuracy varies with the word score, to choose a rejection threshold.

    For each threshold `t`, over the reads with `score >= t`: `coverage` (their share of all reads), `accuracy`
    (their exact-match word accuracy) and `bin_accuracy` (accuracy of the reads with `t <= score < next t`, the
    reliability diagram's bar), with the counts. Accuracies of empty sets are `None` (JSON `null`).
    """
    _check_inputs(predictions, references)
    if len(scores) != len(predictions):
        raise ValueError(f"Got {len(predictions)} predictions but {len(scores)} scores.")
    correct = [prediction == reference for prediction, reference in zip(predictions, references)]
    total = max(len(correct), 1)
    rows = []
    bounds = list(thresholds) + [float("inf")]
    for low, high in zip(bounds[:-1], bounds[1:]):
        kept = [ok for ok, score in zip(correct, scores) if score >= low]
        in_bin = [ok for ok, score in zip(correct, scores) if low <= score < high]
        rows.append(
            {
                "threshold": float(low),
                "coverage": len(kept) / total,
                "accuracy": sum(kept) / len(kept) if kept else None,
                "num_kept": len(kept),
                "bin_accuracy": sum(in_bin) / len(in_bin) if in_bin else None,
                "num_in_bin": len(in_bin),
            }
        )
    return rows


def format_reliability_table(rows: Sequence[Mapping[str, float]]) -> str:
    """A markdown table of [`score_reliability`]'s rows."""
    lines = [
        "| score ≥ | coverage | accuracy of kept | reads in bin | accuracy in bin |",
        "|---|---|---|---|---|",
    ]

    def _accuracy(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    for row in rows:
        lines.append(
            f"| {row['threshold']:.2f} | {row['coverage']:.3f} | {_accuracy(row['accuracy'])} | {row['num_in_bin']} | "
            f"{_accuracy(row['bin_accuracy'])} |"
        )
    return "\n".join(lines)
