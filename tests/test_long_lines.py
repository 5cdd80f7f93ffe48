"""Long text lines: generated 200+ character lines are read in one pass, without truncation."""

import pytest
import torch

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import SyntheticTextGenerator
from mambaocr_hf.data.lines import render_long_line

from .conftest import tiny_config_kwargs


def test_render_long_line_is_deterministic_and_long():
    generator = SyntheticTextGenerator(seed=3)
    image, text = render_long_line(generator, 0, min_chars=200)
    assert len(text) >= 200 and image.size == (2048, 32)
    again, same = render_long_line(generator, 0, min_chars=200)
    assert same == text and again.tobytes() == image.tobytes()
    natural, _ = render_long_line(generator, 1, min_chars=20, max_width=None)
    assert natural.height == 32 and natural.width < 2048


@pytest.mark.slow
def test_a_200_character_line_goes_through_the_model_in_one_pass():
    generator = SyntheticTextGenerator(seed=3)
    image, text = render_long_line(generator, 0, min_chars=200)
    processor = MambaOCRProcessor.from_defaults()
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    assert inputs["pixel_values"].shape[-1] == 2048  # not squeezed further
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.frame_lengths.tolist() == [512]
    assert torch.isfinite(outputs.loss)  # the 200+ character label fits the 512 frames: CTC can align it
    decoded = processor.batch_decode(outputs.logits, outputs.frame_lengths, output_char_details=True)
    assert max(c["end_frame"] for c in decoded.char_details[0]) <= 512
