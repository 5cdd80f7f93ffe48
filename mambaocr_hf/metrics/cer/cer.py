# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Character error rate (CER) for text recognition, as a self-contained `evaluate` module (loaded offline by
`mambaocr_hf.metrics.load_metric("cer")`; it imports nothing from the package)."""

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
Character error rate: the total character-level Levenshtein distance between predictions and references divided by
the total number of reference characters (corpus level, like `jiwer.cer`, but strings are not stripped). Lower is
better; it can exceed 1 when predictions insert characters. When every reference is empty the denominator is 1 (as in
jiwer), so the CER is the number of inserted characters.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognized texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
Returns:
    cer (`float`): the character error rate.
Examples:
    >>> cer = mambaocr_hf.metrics.load_metric("cer")
    >>> cer.compute(predictions=["hallo"], references=["hello"])
    {'cer': 0.2}
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
class CER(evaluate.Metric):
    """Corpus-level character error rate."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://en.wikipedia.org/wiki/Levenshtein_distance"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        if not references:
            raise ValueError("predictions and references are empty: there is nothing to evaluate")
        errors = sum(_edit_distance(p, r) for p, r in zip(predictions, references))
        total = sum(len(r) for r in references)
        return {"cer": errors / max(total, 1)}
