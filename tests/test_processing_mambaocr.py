import numpy as np
import pytest
import torch
from PIL import Image

from mambaocr_hf import MambaOCRDecoderOutput, MambaOCRProcessor, MambaOCRTokenizer


@pytest.fixture
def processor():
    return MambaOCRProcessor.from_defaults()


def test_images_and_text_give_inputs_and_labels(processor):
    batch = processor(
        images=[Image.new("RGB", (64, 32)), Image.new("RGB", (32, 32))], text=["abc", "z"], return_tensors="pt"
    )
    assert set(batch) == {"pixel_values", "pixel_mask", "labels"}
    a, b, c, z = processor.tokenizer.convert_tokens_to_ids(["a", "b", "c", "z"])
    assert batch["labels"].tolist() == [[a, b, c], [z, -100, -100]]
    assert processor(text="ab")["labels"].shape == (1, 2)
    with pytest.raises(ValueError, match="2 images but 1 texts"):
        processor(images=[Image.new("RGB", (8, 8))] * 2, text=["a"])
    with pytest.raises(ValueError, match="Pass `images`"):
        processor()


def _logits_for(processor, frames):
    """Logits whose argmax follows `frames` (characters, '-' for blank) with probabilities ~0.9."""
    vocab = len(processor.tokenizer)
    logits = np.zeros((len(frames), vocab), dtype=np.float32)
    for t, char in enumerate(frames):
        logits[t, 0 if char == "-" else processor.tokenizer.convert_tokens_to_ids(char)] = 6.0
    return logits


def test_batch_decode_logits_ids_and_details(processor):
    logits = np.stack([_logits_for(processor, "-hh-e-ll-l-o"), _logits_for(processor, "--ok--------")])
    assert processor.batch_decode(torch.from_numpy(logits)) == ["hello", "ok"]
    assert processor.batch_decode(torch.from_numpy(logits).argmax(-1)) == ["hello", "ok"]
    details = processor.batch_decode(logits, frame_lengths=[12, 4], output_char_details=True)
    assert isinstance(details, MambaOCRDecoderOutput)
    assert details.text == ["hello", "ok"]
    assert [d["char"] for d in details.char_details[0]] == list("hello")
    assert details.char_details[0][0]["start_frame"] == 1 and details.char_details[0][0]["end_frame"] == 3
    assert all(0.8 < d["confidence"] < 1.0 for d in details.char_details[0])
    assert 0.8 < details.scores[0] < 1.0
    # an uncertain frame lowers the word score
    doubtful = logits.copy()
    doubtful[0, 5, :] = 0.0
    assert processor.batch_decode(doubtful, output_char_details=True).scores[0] < 0.1
    single = processor.decode(torch.from_numpy(logits[0]), output_char_details=True)
    assert single.text == "hello"


def test_decode_errors(processor):
    with pytest.raises(ValueError, match="95 classes but the tokenizer has 37"):
        processor.batch_decode(np.zeros((1, 4, 95), dtype=np.float32))
    with pytest.raises(ValueError, match="need logits"):
        processor.batch_decode(np.zeros((1, 4), dtype=np.int64), output_char_details=True)


def test_save_and_load(processor, tmp_path):
    processor = MambaOCRProcessor.from_defaults(charset="printable")
    processor.save_pretrained(tmp_path)
    loaded = MambaOCRProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded.tokenizer, MambaOCRTokenizer) and len(loaded.tokenizer) == 95
    image = Image.new("RGB", (50, 20), "white")
    assert torch.equal(
        loaded(images=image, return_tensors="pt")["pixel_values"],
        processor(images=image, return_tensors="pt")["pixel_values"],
    )
