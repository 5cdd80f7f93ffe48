import random

from PIL import Image

from mambaocr_hf import MambaOCRImageProcessor
from mambaocr_hf.data import WidthBucketedDataset, model_width_of


def _rows(widths):
    return [{"image": Image.new("L", (width, 32)), "text": str(index)} for index, width in enumerate(widths)]


def _mean_spread(values, count, batch_size=8):
    """Mean width range of the first `count` values cut into batches."""
    batches = [values[start : start + batch_size] for start in range(0, count, batch_size)]
    return sum(max(b) - min(b) for b in batches) / len(batches)


def test_every_row_once_and_batches_of_similar_width():
    widths = [random.Random(i).randint(16, 256) for i in range(100)]
    dataset = WidthBucketedDataset(_rows(widths), batch_size=8, width_of=model_width_of(MambaOCRImageProcessor()),
                                   buffer_batches=4, seed=0)  # fmt: skip
    out = list(dataset)
    assert sorted(row["text"] for row in out) == sorted(str(i) for i in range(100))

    assert _mean_spread([row["image"].width for row in out], 96) < 0.5 * _mean_spread(widths, 96)
    assert [row["text"] for row in out] == [row["text"] for row in dataset]  # deterministic for a seed
    # each epoch has its own order, a function of (seed, epoch) only: a resumed run (a fresh dataset told the
    # epoch) draws the batches the killed one would have
    for epoch in (1, 2, 3):
        dataset.set_epoch(epoch)
    third = [row["text"] for row in dataset]
    fresh = WidthBucketedDataset(_rows(widths), batch_size=8, width_of=dataset.width_of, buffer_batches=4, seed=0)
    fresh.set_epoch(3)
    assert [row["text"] for row in fresh] == third != [row["text"] for row in out]


def test_processor_widths_drive_the_order():
    processor = MambaOCRImageProcessor()
    width_of = model_width_of(processor)
    assert width_of(Image.new("L", (100, 64))) == processor.target_width(100, 64) == 52


def test_batches_come_as_steadily_as_rows():
    """Once the pool is full, every `batch_size` rows read release one batch: a DataLoader worker never goes quiet
    refilling a whole buffer while the training step waits."""
    widths = [random.Random(i).randint(16, 256) for i in range(200)]
    read = []

    def stream():
        for row in _rows(widths):
            read.append(row)
            yield row

    dataset = WidthBucketedDataset(stream(), batch_size=8, width_of=lambda image: image.width, buffer_batches=4)
    out = []
    for row in dataset:
        out.append((row, len(read)))
    # the k-th batch (k >= 0) leaves when 8 * (4 + k) rows have been read, until the stream ends
    for k in range((200 - 32) // 8 + 1):
        assert out[8 * k][1] == 32 + 8 * k
    assert sorted(row["text"] for row, _ in out) == sorted(str(i) for i in range(200))
    # batches of similar widths throughout, the drained tail included
    assert _mean_spread([row["image"].width for row, _ in out], 200) < 0.5 * _mean_spread(widths, 200)
