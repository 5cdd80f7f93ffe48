# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Word error rate (WER) for text recognition, as an `evaluate` module (loaded offline by
`mambaocr_hf.metrics.load_metric("wer")`; its arithmetic is
`mambaocr_hf.metrics.corpus_counts`, shared with `compute_ocr_metrics`)."""

import evaluate

from mambaocr_hf.metrics.loading import string_pair_metric_info
from mambaocr_hf.metrics.ocr_metrics import corpus_counts

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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WER(evaluate.Metric):
    """Corpus-level word error rate."""

    def _info(self) -> evaluate.MetricInfo:
        return string_pair_metric_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, ["https://en.wikipedia.org/wiki/Word_error_rate"]
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        counts = corpus_counts(predictions, references)
        return {"wer": counts.wer}
