#!/usr/bin/env python
"""Score recognisers a user can install offline on the same crops and with the same metrics as scripts/evaluate.py.

    pip install rapidocr-onnxruntime pytesseract        # PP-OCRv4 (ONNX) and a wrapper for Debian's tesseract-ocr
    python scripts/evaluate_peers.py --dataset data/split_ic13 data/split_ic15 --split val --peers rapidocr tesseract

Each peer reads the crop as it is (no detection: `rapidocr` runs its recognition model only, Tesseract 5 runs with
`--psm 7`, one text line). Their output is scored like ours: word accuracy under the standard protocol
(case-insensitive alphanumerics), exact-case accuracy, CER, a row per source and their mean.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from mambaocr_hf.data import load_ocr_dataset
from mambaocr_hf.metrics import compute_ocr_metrics, format_sources_table, mean_over_sources


def rapidocr_reader() -> Callable:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(image) -> str:
        result, _ = engine(np.asarray(image.convert("RGB"))[:, :, ::-1].copy(), use_det=False, use_cls=False)
        return (result[0][0] if result else "").strip()

    return read


def tesseract_reader() -> Callable:
    import pytesseract

    def read(image) -> str:
        return pytesseract.image_to_string(image.convert("RGB"), config="--psm 7").strip()

    return read


PEERS = {"rapidocr": rapidocr_reader, "tesseract": tesseract_reader}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", nargs="+", required=True, help="labels.tsv folders (or any load_ocr_dataset source)"
    )
    parser.add_argument("--split", default=None)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    results: dict = {}
    for peer in args.peers:
        try:
            read = PEERS[peer]()
        except ImportError as error:
            raise SystemExit(
                f"{peer} is not installed ({error}): see this script's help for the pip command."
            ) from None
        results[peer] = {}
        for source in args.dataset:
            dataset = load_ocr_dataset(source, split=args.split, check_ctc=False, min_aspect_ratio=0.0,
                                       max_aspect_ratio=float("inf"))  # fmt: skip
            if args.max_samples:
                dataset = dataset.take(args.max_samples)
            predictions, references = [], []
            for row in tqdm(dataset, desc=f"{peer} on {source}"):
                predictions.append(read(row["image"]))
                references.append(row["text"])
            results[peer][source] = compute_ocr_metrics(predictions, references)
        results[peer]["mean"] = mean_over_sources(list(results[peer].values()))
        print("\n" + format_sources_table(peer, {k: v for k, v in results[peer].items() if k != "mean"},
                                          results[peer]["mean"]))  # fmt: skip
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
