# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Normalized edit distance (1 - NED, ICDAR 2019 ReCTS) for text recognition, as an `evaluate` module
(loaded offline by `mambaocr_hf.metrics.load_metric("ned")`; its arithmetic is
`mambaocr_hf.metrics.corpus_counts`, shared with `compute_ocr_metrics`)."""

import evaluate

from mambaocr_hf.metrics.loading import string_pair_metric_info
from mambaocr_hf.metrics.ocr_metrics import corpus_counts

_CITATION = """\
@inproceedings{zhang2019rects,
    author = {Zhang, Rui and Zhou, Yongsheng and Jiang, Qianyi and Song, Qi and Li, Nan and Zhou, Kai and Wang, Lei and
              Wang, Dong and Liao, Minghui and Yang, Mingkun and Bai, Xiang and Shi, Baoguang and Karatzas, Dimosthenis
              and Lu, Shijian and Jawahar, C. V.},
    title = {{ICDAR} 2019 Robust Reading Challenge on Reading Chinese Text on Signboard},
    booktitle = {15th International Conference on Document Analysis and Recognition (ICDAR)},
    pages = {1577--1581},
    year = {2019}
}
"""

_DESCRIPTION = """\
Normalized edit distance as defined for ICDAR 2019 ReCTS and reported by PARSeq: for each pair,
NED = levenshtein(prediction, reference) / max(len(prediction), len(reference)) (0 when both are empty), averaged
over the samples. The module returns `one_minus_ned` (higher is better, 1.0 is perfect) and the mean `ned`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognized texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
Returns:
    one_minus_ned (`float`): 1 - mean normalized edit distance, in [0, 1].
    ned (`float`): mean normalized edit distance, in [0, 1].
Examples:
    >>> ned = mambaocr_hf.metrics.load_metric("ned")
    >>> ned.compute(predictions=["hallo", ""], references=["hello", ""])
    {'one_minus_ned': 0.9, 'ned': 0.1}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NED(evaluate.Metric):
    """Mean normalized edit distance, reported as 1 - NED."""

    def _info(self) -> evaluate.MetricInfo:
        return string_pair_metric_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, ["https://arxiv.org/abs/1912.09641"]
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        counts = corpus_counts(predictions, references)
        return {"one_minus_ned": 1.0 - counts.ned, "ned": counts.ned}
