# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Word accuracy for text recognition, exact and with the scene-text benchmark protocol, as an
`evaluate` module (loaded offline by `mambaocr_hf.metrics.load_metric("word_accuracy")`; its arithmetic is
`mambaocr_hf.metrics.corpus_counts`, shared with `compute_ocr_metrics`)."""

import evaluate

from mambaocr_hf.metrics.loading import string_pair_metric_info
from mambaocr_hf.metrics.ocr_metrics import corpus_counts

_CITATION = """\
@inproceedings{baek2019wrong,
    author = {Baek, Jeonghun and Kim, Geewook and Lee, Junyeop and Park, Sungrae and Han, Dongyoon and Yun, Sangdoo and
              Oh, Seong Joon and Lee, Hwalsuk},
    title = {What Is Wrong With Scene Text Recognition Model Comparisons? Dataset and Model Analysis},
    booktitle = {International Conference on Computer Vision (ICCV)},
    year = {2019}
}
@inproceedings{bautista2022parseq,
    author = {Bautista, Darwin and Atienza, Rowel},
    title = {Scene Text Recognition with Permuted Autoregressive Sequence Models},
    booktitle = {European Conference on Computer Vision (ECCV)},
    year = {2022}
}
"""

_DESCRIPTION = """\
Word accuracy: the fraction of predictions that equal their reference. `word_accuracy` compares the strings exactly;
`word_accuracy_ci_alnum` follows the scene-text benchmark protocol of clovaai's deep-text-recognition-benchmark and
PARSeq: both strings are lower-cased and every character outside [0-9a-z] is removed before comparing (two strings
that become empty match).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognized texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
Returns:
    word_accuracy (`float`): fraction of exact matches, in [0, 1].
    word_accuracy_ci_alnum (`float`): fraction of case-insensitive alphanumeric matches, in [0, 1].
Examples:
    >>> accuracy = mambaocr_hf.metrics.load_metric("word_accuracy")
    >>> accuracy.compute(predictions=["Hello!", "world"], references=["hello", "world"])
    {'word_accuracy': 0.5, 'word_accuracy_ci_alnum': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordAccuracy(evaluate.Metric):
    """Exact and case-insensitive alphanumeric word accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        return string_pair_metric_info(
            _DESCRIPTION,
            _CITATION,
            _KWARGS_DESCRIPTION,
            [
                "https://github.com/clovaai/deep-text-recognition-benchmark",
                "https://github.com/baudm/parseq",
            ],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        counts = corpus_counts(predictions, references)
        return {"word_accuracy": counts.word_accuracy, "word_accuracy_ci_alnum": counts.word_accuracy_ci_alnum}
