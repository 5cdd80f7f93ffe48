# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Character error rate (CER) for text recognition, as an `evaluate` module (loaded offline by
`mambaocr_hf.metrics.load_metric("cer")`; its arithmetic is
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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CER(evaluate.Metric):
    """Corpus-level character error rate."""

    def _info(self) -> evaluate.MetricInfo:
        return string_pair_metric_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, ["https://en.wikipedia.org/wiki/Levenshtein_distance"]
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        counts = corpus_counts(predictions, references)
        return {"cer": counts.cer}
