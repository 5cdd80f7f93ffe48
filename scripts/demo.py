#!/usr/bin/env python
"""A one-minute smoke run (`make smoke`): build the default MambaOCR, save it as a Hub-ready checkpoint, load it back
through the Auto classes and recognise a few rendered words.

The model is randomly initialised, so its predictions are noise: this run shows that the package works end to end,
not that it reads text. `make demo` trains a model that does.
"""

import argparse
import logging
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from transformers import AutoModel, AutoProcessor

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint

WORDS = ["hello", "mamba", "ocr2026", "street", "42"]


def render(word: str) -> Image.Image:
    font = ImageFont.load_default(size=28)
    left, top, right, bottom = font.getbbox(word)
    image = Image.new("RGB", (right - left + 16, bottom - top + 12), "white")
    ImageDraw.Draw(image).text((8 - left, 6 - top), word, fill="black", font=font)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", default="runs/demo", help="where the checkpoint is written")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = MambaOCRForCTC(MambaOCRConfig()).eval()
    processor = MambaOCRProcessor.from_defaults()
    save_checkpoint(model, processor, args.output_dir, training_data="none: randomly initialised demo model")
    print(
        f"Saved a Hub-ready checkpoint to {args.output_dir}: {sorted(p.name for p in Path(args.output_dir).iterdir())}"
    )

    model = AutoModel.from_pretrained(args.output_dir).eval()
    processor = AutoProcessor.from_pretrained(args.output_dir)
    images = [render(word) for word in WORDS]
    inputs = processor(images=images, return_tensors="pt")
    start = time.perf_counter()
    with torch.no_grad():
        outputs = model(**inputs)
    elapsed = time.perf_counter() - start
    decoded = processor.batch_decode(outputs.logits, outputs.frame_lengths, output_char_details=True)
    print(f"\n{'truth':<10} {'prediction (untrained model)':<30} score")
    for word, text, score in zip(WORDS, decoded.text, decoded.scores):
        print(f"{word:<10} {text!r:<30} {score:.3f}")
    print(
        f"\n{len(images)} images in {elapsed * 1000:.0f} ms on {args.threads} threads (random weights: the text is noise)."
    )


if __name__ == "__main__":
    main()
