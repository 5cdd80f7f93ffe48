# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Normalized edit distance (1 - NED, ICDAR 2019 ReCTS) for text recognition, as a self-contained `evaluate` module
(loaded offline by `mambaocr_hf.metrics.load_metric("ned")`; it imports nothing from the package)."""

from collections.abc import Hashable, Sequence

import datasets
import evaluate

try:  # optional: the pure-Python distance below gives the same results
    from rapidfuzz.distance import Levenshtein as _rapidfuzz_levenshtein
except ImportError:  # pragma: no cover
    _rapidfuzz_levenshtein = None

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
class NED(evaluate.Metric):
    """Mean normalized edit distance, reported as 1 - NED."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://arxiv.org/abs/1912.09641"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        if not references:
            raise ValueError("predictions and references are empty: there is nothing to evaluate")
        total = 0.0
        for prediction, reference in zip(predictions, references):
            longest = max(len(prediction), len(reference))
            if longest:
                total += _edit_distance(prediction, reference) / longest
        ned = total / len(references)
        return {"one_minus_ned": 1.0 - ned, "ned": ned}
