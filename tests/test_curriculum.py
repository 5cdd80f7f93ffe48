"""A curriculum: the training stream starts with a finite stream of easy crops, each shuffled on its own."""

import datasets
import pytest
from PIL import Image
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import CurriculumStream
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
    first, then = _Epochs([1, 2, 3]), _Epochs([4, 5])
    stream = CurriculumStream(first, then)
    assert list(stream) == [1, 2, 3, 4, 5]
    stream.set_epoch(3)
    assert first.epoch == then.epoch == 3


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
