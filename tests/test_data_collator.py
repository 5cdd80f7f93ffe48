"""OCRDataCollator: model inputs from rows, with bad samples dropped instead of failing the step."""

import io

import datasets
import pytest
import torch
from PIL import Image

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import OCRDataCollator, load_ocr_dataset

from .conftest import tiny_config_kwargs


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """`datasets` builders leave lock files in their cache even when streaming: keep them out of ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


@pytest.fixture(scope="module")
def processor():
    return MambaOCRProcessor.from_defaults()


def _png_bytes(width=64, height=32):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_batches_of_good_rows(processor):
    collator = OCRDataCollator(processor)
    rows = [
        {"image": Image.new("RGB", (100, 32)), "text": "Hello"},
        {"image": {"bytes": _png_bytes(40, 20), "path": None}, "text": "ab"},
        {"image": _png_bytes(), "text": "xyz"},
    ]
    batch = collator(rows)
    assert set(batch) == {"pixel_values", "pixel_mask", "labels"}
    assert batch["pixel_values"].shape == (3, 3, 32, 100)
    expected = processor(text=["hello", "ab", "xyz"])["labels"]
    assert batch["labels"].tolist() == expected.tolist()
    assert batch["labels"][1, 2:].tolist() == [-100, -100, -100]
    assert collator.num_dropped == 0


def test_pad_to_multiple_of_gives_fewer_batch_shapes_and_the_same_reads(processor):
    rows = [{"image": Image.new("RGB", (100, 32)), "text": "Hello"}, {"image": _png_bytes(40, 20), "text": "ab"}]
    batch = OCRDataCollator(processor, pad_to_multiple_of=32)(rows)
    plain = OCRDataCollator(processor)(rows)
    assert batch["pixel_values"].shape == (2, 3, 32, 128) and plain["pixel_values"].shape == (2, 3, 32, 100)
    assert torch.equal(batch["pixel_mask"].sum(-1), plain["pixel_mask"].sum(-1))
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        padded_out = model(**batch)
        plain_out = model(**plain)
    # the padding is masked: each image's frames, and so its loss and its read, are those of the tighter batch
    frames = plain_out.logits.shape[1]
    assert torch.allclose(padded_out.logits[:, :frames], plain_out.logits, atol=1e-4)
    assert torch.allclose(padded_out.loss, plain_out.loss, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the image processor's `width_multiple`"):
        OCRDataCollator(processor, pad_to_multiple_of=30)


def test_bad_samples_are_dropped_and_counted(processor, tmp_path):
    collator = OCRDataCollator(processor, widen=False)  # by default a too-narrow crop is widened instead
    rows = [
        {"image": Image.new("RGB", (64, 32)), "text": "good"},
        {"image": None, "text": "none"},
        {"image": str(tmp_path / "missing.png"), "text": "missing"},
        {"image": {"bytes": b"broken", "path": None}, "text": "broken"},
        {"image": Image.new("RGB", (0, 32)), "text": "empty"},
        {"image": Image.new("RGB", (16, 32)), "text": "toolongforfourframes"},
        {"image": Image.new("RGB", (64, 32)), "text": ""},
        {"image": Image.new("RGB", (64, 32)), "text": "fine!"},
    ]
    batch = collator(rows)
    assert batch["pixel_values"].shape[0] == 2
    assert processor.batch_decode(batch["labels"], group_tokens=False) == ["good", "fine"]
    assert collator.dropped == {
        "unreadable_image": 3,
        "missing_image": 1,
        "label_too_long_for_ctc": 1,
        "empty_label": 1,
    }
    # the batch trains: finite CTC loss on every kept sample
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    assert torch.isfinite(model(**batch).loss)


def test_unknown_character_policies(processor):
    rows = [
        {"image": Image.new("RGB", (80, 32)), "text": "naïve"},
        {"image": Image.new("RGB", (80, 32)), "text": "ok"},
    ]
    assert OCRDataCollator(processor)(rows)["labels"].shape[0] == 2  # map: "naive"
    dropping = OCRDataCollator(processor, unknown_char_policy="drop")
    assert dropping(rows)["labels"].shape[0] == 1 and dropping.dropped == {"unknown_characters": 1}
    with pytest.raises(ValueError, match="outside the charset"):
        OCRDataCollator(processor, unknown_char_policy="error")(rows)


def test_a_batch_with_no_good_sample(processor):
    # (a crop too narrow for its label is no longer bad: it is widened)
    bad = [{"image": None, "text": "x"}, {"image": Image.new("RGB", (8, 32)), "text": ""}]
    with pytest.raises(ValueError, match="All 2 samples of the batch are bad"):
        OCRDataCollator(processor)(bad)
    reusing = OCRDataCollator(processor, empty_batch="reuse_last")
    with pytest.raises(ValueError):
        reusing(bad)  # nothing to reuse yet
    good = reusing([{"image": Image.new("RGB", (64, 32)), "text": "abc"}])
    again = reusing(bad)
    assert torch.equal(again["labels"], good["labels"])
    with pytest.raises(ValueError, match="empty_batch"):
        OCRDataCollator(processor, empty_batch="skip")


@pytest.mark.slow
def test_with_a_dataloader_over_synthetic_data(processor):
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=8, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=OCRDataCollator(processor))
    batches = list(loader)
    assert len(batches) == 2 and all(batch["pixel_values"].shape[:2] == (4, 3) for batch in batches)
