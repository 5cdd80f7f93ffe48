"""What the data pipeline skipped reaches the person training: totals from DataLoader workers at the end of each epoch
and of the run, a warning when most samples are skipped, and an error when none is left to train on."""

import logging
import os

import pytest
from PIL import Image
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import load_ocr_dataset, skip_counts
from mambaocr_hf.data.reporting import NoTrainingDataError, SkipReportCallback
from mambaocr_hf.training import make_ocr_trainer

from .conftest import tiny_config_kwargs

# slow as a whole: each test trains with the Trainer, some with DataLoader worker processes
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def processor():
    return MambaOCRProcessor.from_defaults()


def _folder(root, good: int, missing: int, empty: int = 0):
    """A labels.tsv folder with `good` readable samples, `missing` whose image file does not exist and `empty` with
    an empty label."""
    root.mkdir(parents=True)
    lines = []
    for index in range(good):
        Image.new("RGB", (64, 32), "white").save(root / f"{index}.png")
        lines.append(f"{index}.png\tw{index % 10}")
    lines += [f"missing{index}.png\tword" for index in range(missing)]
    for index in range(empty):
        Image.new("RGB", (64, 32), "white").save(root / f"e{index}.png")
        lines.append(f"e{index}.png\t")
    (root / "labels.tsv").write_text("\n".join(lines) + "\n")
    return str(root)


def _trainer(tmp_path, processor, dataset, max_steps, workers=1):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128)))
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4, report_to="none",
        use_cpu=True, dataloader_num_workers=workers, remove_unused_columns=False, save_strategy="no",
        logging_steps=1, dataloader_persistent_workers=False,
    )  # fmt: skip
    args.accelerator_config.dispatch_batches = False  # as the training scripts set it (`setup_training_run`)
    return make_ocr_trainer(model, processor, args, dataset, group_by_width=False, shuffle_buffer_size=0)


def test_skips_in_dataloader_workers_are_reported_each_epoch_and_at_the_end(tmp_path, processor, caplog):
    """The samples are read and checked in a DataLoader worker, whose counts used to stay there: the training
    process now logs them at the end of each epoch and of the run."""
    folder = _folder(tmp_path / "data", good=8, missing=3, empty=1)
    dataset = load_ocr_dataset(folder, processor=processor)
    trainer = _trainer(tmp_path, processor, dataset, max_steps=3)  # 2 steps per pass: a second epoch starts
    with caplog.at_level(logging.INFO):
        trainer.train()
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Data in epoch")]
    assert len(epochs) == 2
    for message in epochs:  # each pass reads every sample once, in the worker
        assert "skipped 4 of 12 samples read" in message, message
        assert "empty_label 1" in message and "missing_image 3" in message and "kept 8" in message
    (run,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Data over this run")]
    assert "skipped 8 of 24 samples read" in run and "missing_image 6" in run
    assert not any("MOST OF THE TRAINING DATA" in r.getMessage() for r in caplog.records)  # 33%: no alarm
    # the counts came from the worker: the training process read no sample itself
    assert skip_counts(f"folder:{folder}") == {}
    assert "MAMBAOCR_SKIP_REPORT_DIR" not in os.environ  # the report is closed with the run


@pytest.mark.parametrize("workers", [0, 1])
def test_a_training_set_without_one_good_sample_is_an_error(tmp_path, processor, workers):
    """Every sample bad: the run used to 'train' 0 steps, exit 0 and save an untrained model."""
    folder = _folder(tmp_path / "data", good=0, missing=5, empty=2)
    trainer = _trainer(tmp_path, processor, load_ocr_dataset(folder, processor=processor), 3, workers)
    with pytest.raises(NoTrainingDataError, match=r"without a single step: 7 of 7 samples read were skipped") as info:
        trainer.train()
    assert "5 missing_image" in str(info.value) and "2 empty_label" in str(info.value)
    assert trainer.state.global_step == 0


def test_a_mostly_skipped_training_set_gets_a_loud_warning(tmp_path, processor, caplog):
    folder = _folder(tmp_path / "data", good=4, missing=8)
    trainer = _trainer(tmp_path, processor, load_ocr_dataset(folder, processor=processor), 2)
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SkipReportCallback))
    callback.min_samples = 10  # the default waits for 100 samples before judging
    with caplog.at_level(logging.WARNING):
        trainer.train()  # trains on the rest: a warning, not an error
    alarms = [r.getMessage() for r in caplog.records if "MOST OF THE TRAINING DATA IS SKIPPED" in r.getMessage()]
    assert len(alarms) == 1 and "8 of 12 samples read (67%)" in alarms[0] and "missing_image 8" in alarms[0]
    assert trainer.state.global_step == 2
