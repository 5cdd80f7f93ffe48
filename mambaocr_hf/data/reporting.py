# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""What the data pipeline skipped, told to the person training: totals by source and reason at the end of each epoch
and of the run, DataLoader workers included, a loud warning when most samples are skipped, and an error when no
sample at all could be trained on."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter

from transformers import TrainerCallback
from transformers.utils import logging

from .filters import SKIP_REASONS, collect_skip_counts, start_skip_report, stop_skip_report

logger = logging.get_logger(__name__)

COLLATOR_NAME = "OCRDataCollator"


class NoTrainingDataError(ValueError):
    """Training ran no step because the training set gave no usable sample (every one was skipped, or there were
    none); the message has the skip counts by reason."""


def _difference(now: dict, before: dict) -> dict:
    """Counts of `now` minus those of `before` (both from `collect_skip_counts`), sources with nothing left out."""
    result = {}
    for source, entry in now.items():
        old = before.get(source, {})
        skipped = Counter(entry["skipped"]) - Counter(old.get("skipped", {}))
        changed = Counter(entry["changed"]) - Counter(old.get("changed", {}))
        kept = entry["kept"] - old.get("kept", 0)
        if skipped or changed or kept > 0:
            result[source] = {"skipped": dict(skipped), "changed": dict(changed), "kept": max(kept, 0)}
    return result


def skip_share(counts: dict) -> tuple[int, int]:
    """`(skipped, read)` over `counts` (from `collect_skip_counts`): samples the sources read (kept + skipped; the
    collator's alone where no source counted, e.g. a dataset of your own), and those skipped by a source or by the
    collator."""
    sources = [entry for name, entry in counts.items() if name != COLLATOR_NAME]
    collator = counts.get(COLLATOR_NAME, {"skipped": {}, "kept": 0})
    skipped = sum(sum(entry["skipped"].values()) for entry in counts.values())
    if sources:
        read = sum(entry["kept"] + sum(entry["skipped"].values()) for entry in sources)
    else:
        read = collator["kept"] + sum(collator["skipped"].values())
    return skipped, max(read, skipped)


def format_skip_counts(counts: dict) -> str:
    """One line per source: `name: skipped N (reason n, ...); kept M; labels changed: ...`."""
    lines = []
    for source, entry in counts.items():
        line = f"  {source}: skipped {sum(entry['skipped'].values())}"
        if entry["skipped"]:
            line += " (" + ", ".join(f"{reason} {n}" for reason, n in sorted(entry["skipped"].items())) + ")"
        line += f", kept {entry['kept']}"
        if entry["changed"]:
            line += "; kept with a changed label: " + ", ".join(
                f"{reason} {n}" for reason, n in sorted(entry["changed"].items())
            )
        lines.append(line)
    return "\n".join(lines) or "  (no sample read)"


class SkipReportCallback(TrainerCallback):
    """Reports the samples the data pipeline skipped, DataLoader workers included (they write their counts to a
    folder this callback opens; see `filters.start_skip_report`).

    - At the end of each epoch and of the run: the totals by source and reason (a warning when any were skipped).
    - When more than `max_skip_share` of the samples read were skipped (checked at every log and epoch end): a loud
      warning with the counts, once per run. Not an error: a strict charset or label filter can rightly drop most
      of a mixed set, and stopping a long run for it would waste it; the totals say what happened.
    - When a run ends without a single training step because the training set gave no usable sample: a
      `NoTrainingDataError` with the counts by reason, instead of an untrained model saved as if it had trained.
    """

    def __init__(self, max_skip_share: float = 0.5, min_samples: int = 100):
        self.max_skip_share = max_skip_share
        self.min_samples = min_samples
        self._folder: str | None = None
        self._at_start: dict = {}
        self._at_epoch: dict = {}
        self._start_step = 0
        self._epochs = 0
        self._warned_share = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._folder = tempfile.mkdtemp(prefix="mambaocr_skips_")
        start_skip_report(self._folder)
        self._at_start = self._at_epoch = collect_skip_counts(self._folder)
        self._start_step = state.global_step
        self._epochs = 0
        self._warned_share = False

    def run_counts(self) -> dict:
        """The counts of this run so far (all processes)."""
        return _difference(collect_skip_counts(self._folder), self._at_start)

    def _check_share(self, counts: dict, when: str) -> None:
        skipped, read = skip_share(counts)
        if self._warned_share or read < self.min_samples or skipped <= self.max_skip_share * read:
            return
        self._warned_share = True
        logger.warning(
            f"MOST OF THE TRAINING DATA IS SKIPPED: {skipped} of {read} samples read ({skipped / read:.0%}) so far "
            f"({when}), more than {self.max_skip_share:.0%}. Training goes on with the rest; check the data and "
            f"the filters (charset, max_label_length, aspect ratios) if that is not meant:\n{format_skip_counts(counts)}"
        )

    def on_log(self, args, state, control, **kwargs):
        if self._folder is not None and not self._warned_share:
            self._check_share(self.run_counts(), f"step {state.global_step}")

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._folder is None:
            return
        now = collect_skip_counts(self._folder)
        epoch = _difference(now, self._at_epoch)
        self._at_epoch = now
        skipped, read = skip_share(self.run_counts())
        if skipped and skipped == read:  # nothing kept yet: stop before an empty epoch's checkpoint is saved
            self._refuse_if_nothing_trained(state)
        skipped, read = skip_share(epoch)
        self._epochs += 1
        message = f"Data in epoch {self._epochs} of this run: skipped {skipped} of {read} samples read.\n"
        (logger.warning if skipped else logger.info)(message + format_skip_counts(epoch))
        self._check_share(self.run_counts(), f"end of epoch {self._epochs}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._folder is None:
            return
        try:
            self._refuse_if_nothing_trained(state)
            counts = self.run_counts()
            skipped, read = skip_share(counts)
            message = f"Data over this run: skipped {skipped} of {read} samples read.\n"
            (logger.warning if skipped else logger.info)(message + format_skip_counts(counts))
        finally:
            self._close()

    def _close(self) -> None:
        stop_skip_report(self._folder)
        shutil.rmtree(self._folder, ignore_errors=True)
        self._folder = None

    def _refuse_if_nothing_trained(self, state) -> None:
        if state.global_step > self._start_step or state.global_step >= state.max_steps:
            return
        counts = self.run_counts()
        skipped, read = skip_share(counts)
        if skipped:
            reasons = Counter()
            for entry in counts.values():
                reasons.update(entry["skipped"])
            why = "; ".join(
                f"{n} {reason} ({SKIP_REASONS.get(reason, reason)})" for reason, n in reasons.most_common()
            )
            detail = f"{skipped} of {read} samples read were skipped: {why}.\n{format_skip_counts(counts)}\n"
        else:
            detail = "the training set gave no sample at all.\n"
        self._close()
        raise NoTrainingDataError(
            f"Training stopped at step {state.global_step} without a single step: {detail}Fix the data (or the "
            "filters) and run again; nothing was trained, so no model is saved."
        )


__all__ = ["NoTrainingDataError", "SkipReportCallback", "format_skip_counts", "skip_share"]
