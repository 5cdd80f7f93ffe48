# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Word error rate (WER) for text recognition, as a self-contained `evaluate` module (loaded offline by
`mambaocr_hf.metrics.load_metric("wer")`; it imports nothing from the package)."""

from collections.abc import Hashable, Sequence

import datasets
import evaluate

try:  # optional: the pure-Python distance below gives the same results
    from rapidfuzz.distance import Levenshtein as _rapidfuzz_levenshtein
except ImportError:  # pragma: no cover
    _rapidfuzz_levenshtein = None

_CITATION = """\
@inproceedings{morris2004wer,
    author = {Morris, Andrew Cameron and Maier, Viktoria and Green, Phil},
    title = {From {WER} and {RIL} to {MER} and {WIL}: improved evaluation measures for connected speech recognition},
    booktitle = {Interspeech 2004},
    year = {2004}
}
"""

_DESCRIPTION = """\
Word error rate: the total word-level Levenshtein distance between predictions and references divided by the total
number of reference words, words being the whitespace-separated tokens of `str.split()` (corpus level, like
`jiwer.wer`). Lower is better; it can exceed 1. When every reference is empty the denominator is 1 (as in jiwer), so
the WER is the number of inserted words.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognized texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
Returns:
    wer (`float`): the word error rate.
Examples:
    >>> wer = mambaocr_hf.metrics.load_metric("wer")
    >>> wer.compute(predictions=["the cat sat"], references=["the cat sat down"])
    {'wer': 0.25}
"""


def _edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between two strings or token sequences."""
    if _rapidfuzz_levenshtein is not None:
        return int(_rapidfuzz_levenshtein.distance(a, b))
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b)))
        previous = current
    return previous[-1]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WER(evaluate.Metric):
    """Corpus-level word error rate."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://en.wikipedia.org/wiki/Word_error_rate"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        if not references:
            raise ValueError("predictions and references are empty: there is nothing to evaluate")
        errors = sum(_edit_distance(p.split(), r.split()) for p, r in zip(predictions, references))
        total = sum(len(r.split()) for r in references)
        return {"wer": errors / max(total, 1)}
