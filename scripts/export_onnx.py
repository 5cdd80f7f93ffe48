#!/usr/bin/env python
"""Export a MambaOCR checkpoint to ONNX (dynamic batch and width), check it against PyTorch with ONNX Runtime, and
write the processor files beside it so that the folder is usable without the PyTorch weights.

python scripts/export_onnx.py --model runs/demo_cpu --output onnx/model.onnx
python scripts/export_onnx.py --model user/mambaocr-base --output onnx/model.onnx --trust_remote_code --check

Run the result with `mambaocr_hf.onnx_export.ONNXRecognizer` (or any ONNX Runtime session): inputs `pixel_values`
[batch, 3, 32, width] float32 and `pixel_mask` [batch, width] int64 from the processor; outputs `logits` and
`frame_lengths`, decoded by `processor.batch_decode(logits, frame_lengths=frame_lengths)`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

TOLERANCE = 1e-3


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None and not name.startswith(".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    parser.add_argument("--output", required=True, help="the .onnx file to write (processor files go beside it)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20; at least 18)")
    parser.add_argument(
        "--check", action="store_true", help="also run the ONNX checker (full check, with shape inference)"
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="load the checkpoint's own model code")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads for the comparison")
    parser.add_argument("--skip_validation", action="store_true", help="do not compare with PyTorch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if not os.path.isdir(args.model) and (os.path.exists(args.model) or not _looks_like_hub_id(args.model)):
        return fail(f"--model {args.model!r} is not a checkpoint folder (no such directory) nor a Hub id.")

    import torch
    from transformers import AutoModel, AutoProcessor

    import mambaocr_hf  # noqa: F401  (registers the Auto classes)
    from mambaocr_hf import onnx_export
    from mambaocr_hf.cli import weights_load_error

    try:
        onnx_export.require_onnx(runtime=not args.skip_validation)
    except ImportError as error:
        return fail(str(error))
    torch.set_num_threads(args.threads)
    try:
        model = AutoModel.from_pretrained(args.model, trust_remote_code=args.trust_remote_code).eval()
    except Exception as error:
        message = weights_load_error(args.model, error)  # a truncated or corrupt weight file
        if message is not None:
            return fail(message)
        if not isinstance(error, (OSError, ValueError)):
            raise
        return fail(f"could not load a model from {args.model!r}: {error}")

    try:
        start = time.perf_counter()
        path = onnx_export.export_onnx(model, args.output, opset=args.opset or onnx_export.DEFAULT_OPSET)
    except (OSError, ValueError, TypeError) as error:
        return fail(str(error))
    size_mb = os.path.getsize(path) / 2**20
    print(f"exported {path} ({size_mb:.1f} MB) in {time.perf_counter() - start:.1f}s")

    if args.check:
        import onnx

        onnx.checker.check_model(str(path), full_check=True)
        print("onnx.checker: ok")

    try:
        processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        print(f"warning: no processor saved beside the ONNX model ({error})", file=sys.stderr)
    else:
        processor.save_pretrained(path.parent)
        print(f"processor files written to {path.parent}")

    if args.skip_validation:
        return 0
    try:
        results = onnx_export.validate_onnx(model, path, intra_op_num_threads=args.threads)
    except Exception as error:  # onnxruntime raises its own exception types
        print(
            f"error: the exported graph does not run on new shapes: {type(error).__name__}: {error}", file=sys.stderr
        )
        return 1
    worst = max(diff for _, _, diff in results)
    for batch, width, diff in results:
        print(f"onnxruntime vs PyTorch, batch {batch} x 32x{width}: max abs logit difference {diff:.2e}")
    if worst > TOLERANCE:
        print(f"error: the ONNX model differs from PyTorch by {worst:.2e} > {TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"ok: max abs difference {worst:.2e} <= {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
