"""A curriculum: the training stream starts with a finite stream of easy crops, each shuffled on its own."""

import datasets
import pytest
import torch
from PIL import Image
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import CurriculumStream, OCRDataCollator, WidthBucketedDataset
from mambaocr_hf.data.collator import NO_AUGMENT_KEY
from mambaocr_hf.training import make_ocr_trainer

from .conftest import tiny_config_kwargs


def _stream(text: str, count: int, num_shards: int = 4) -> datasets.IterableDataset:
    def rows(shards):
        for shard in shards:
            for index in range(count // num_shards):
                yield {"image": Image.new("RGB", (40 + 4 * (index % 5), 32), "white"), "text": f"{text}{shard}"}

    return datasets.IterableDataset.from_generator(rows, gen_kwargs={"shards": list(range(num_shards))})


class _Epochs:
    def __init__(self, rows):
        self.rows, self.epoch = rows, None

    def __iter__(self):
        return iter(self.rows)

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_curriculum_stream_reads_all_of_the_first_stream_then_the_second():
    first, then = _Epochs([{"text": "a"}, {"text": "b"}, {"text": "c"}]), _Epochs([{"text": "d"}, {"text": "e"}])
    stream = CurriculumStream(first, then)
    assert [row["text"] for row in stream] == ["a", "b", "c", "d", "e"]
    stream.set_epoch(3)
    assert first.epoch == then.epoch == 3
    # the easy words come once: a later epoch (the main stream ran out) is the main stream alone
    assert [row["text"] for row in stream] == ["d", "e"]
    stream.set_epoch(0)  # the first epoch again (a run resumed before its first epoch ended replays it)
    assert [row["text"] for row in stream] == ["a", "b", "c", "d", "e"]


def test_persistent_dataloader_workers_see_the_epoch_the_trainer_sets():
    # with persistent_workers=True the worker keeps its copy of the stream from one epoch to the next: the epoch the
    # main process sets must still reach it, or the curriculum comes back at every epoch
    first, then = [{"image": "ab", "text": "easy"}] * 3, [{"image": "ab", "text": "main"}] * 2
    stream = WidthBucketedDataset(CurriculumStream(first, then), batch_size=2, width_of=len, buffer_batches=1)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1, persistent_workers=True)
    assert [row["text"] for row in loader] == ["easy"] * 3 + ["main"] * 2
    worker = loader._iterator._workers[0]
    stream.set_epoch(1)
    assert [row["text"] for row in loader] == ["main"] * 2
    assert loader._iterator._workers[0] is worker  # the same worker process read both epochs


def _trainer(tmp_path, train, curriculum, group_by_width):
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, report_to=[], use_cpu=True, seed=1
    )
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    return make_ocr_trainer(
        model,
        MambaOCRProcessor.from_defaults(),
        args,
        train,
        group_by_width=group_by_width,
        shuffle_buffer_size=8,
        curriculum_dataset=curriculum,
    )


@pytest.mark.parametrize("group_by_width", [False, True])
def test_trainer_reads_the_curriculum_before_the_training_stream(tmp_path, group_by_width):
    trainer = _trainer(tmp_path, _stream("real", 400), _stream("easy", 200), group_by_width)
    texts = [row["text"] for row in trainer.train_dataset]
    assert len(texts) == 600
    easy = [i for i, text in enumerate(texts) if text.startswith("easy")]
    assert len(easy) == 200
    if group_by_width:
        # width bucketing reorders rows through a pool of 16 batches (64 rows), where the odd row of an extreme
        # width can linger: most of the curriculum still comes first
        assert sum(index < 200 + 64 for index in easy) >= 190, easy
    else:
        assert easy == list(range(200))
    # each stream is shuffled (its shards and a buffer), not read in its written order
    assert [texts[i] for i in easy] != sorted(texts[i] for i in easy)


def test_a_map_style_curriculum_is_a_clear_error(tmp_path):
    easy = datasets.Dataset.from_dict({"text": ["a", "b"]})
    with pytest.raises(TypeError, match="streaming"):
        _trainer(tmp_path, _stream("real", 8), easy, group_by_width=False)


class _Black:
    def __call__(self, image):
        return Image.new("RGB", image.size, "black")


def test_the_curriculum_is_not_augmented_but_the_training_stream_is():
    first = [{"image": Image.new("RGB", (40, 32), "white"), "text": "easy"}] * 2
    then = [{"image": Image.new("RGB", (40, 32), "white"), "text": "real"}] * 2
    rows = list(CurriculumStream(first, then))
    assert [NO_AUGMENT_KEY in row for row in rows] == [True, True, False, False]
    collator = OCRDataCollator(MambaOCRProcessor.from_defaults(), augment=_Black())
    pixels = collator(rows)["pixel_values"]
    assert pixels[:2].amax() > pixels[2:].amax()  # the easy words stay white, the others were blackened
    # augment_first: the curriculum is augmented like the rest
    assert not any(NO_AUGMENT_KEY in row for row in CurriculumStream(first, then, augment_first=True))
