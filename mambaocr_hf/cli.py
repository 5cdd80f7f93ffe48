# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""`mambaocr` command (also `scripts/infer.py`): recognise the text in images with a MambaOCR checkpoint.

    mambaocr word.png --model runs/demo_cpu
    mambaocr crops/ "more/*.jpg" --model org/mambaocr --batch_size 32 --format jsonl --output results.jsonl
    mambaocr crops/ --model runs/demo_cpu --beam_width 10 --lexicon words.txt --format tsv

Unreadable files are reported and skipped; the exit status is 1 only when no image could be read.

File names that are not valid UTF-8 are written escaped, never as invalid UTF-8: in JSON lines as \\udcXX escapes
(os.fsencode(json.loads(line)["path"]) gives the file's bytes back), in TSV and tables as \\xNN. TSV fields escape
backslash, tab, newline and carriage return as \\\\, \\t, \\n and \\r, so each record is one line of three fields.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

logger = logging.getLogger("mambaocr")


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Files of `inputs` (files, folders searched recursively for images, glob patterns) in a stable order, and the
    inputs that matched nothing."""
    files, missing = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(path for path in glob.glob(item, recursive=True) if os.path.isfile(path))
        if not found:
            missing.append(item)
        files.extend(found)
    # a file matched by a glob, named, and inside a named folder is read once, where it first came
    seen: set[str] = set()
    unique = [path for path in files if not (os.path.realpath(path) in seen or seen.add(os.path.realpath(path)))]
    return unique, missing


def _read(path: str) -> Image.Image:
    from .image_processing_mambaocr import to_pil_image

    return to_pil_image(path)


def _readable(paths: Sequence[str], skipped: list[tuple[str, str]]) -> Iterator[tuple[str, Image.Image]]:
    for path in paths:
        try:
            yield path, _read(path)
        except (OSError, ValueError) as error:
            skipped.append((path, str(error)))
            logger.warning(f"Skipping {path}: {error}")


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def shown_path(path: str) -> str:
    """`path` as text that encodes to UTF-8: a name that is not UTF-8 (its bytes kept as lone surrogates by
    `os.fsdecode`) shows its bytes as `\\xNN`."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def tsv_field(text: str) -> str:
    """One TSV field: backslash, tab, newline and carriage return escaped, bytes that are not UTF-8 as `\\xNN`."""
    return shown_path(text.translate(_TSV_ESCAPES))


def jsonl_record(record: dict) -> str:
    """One JSON line that is valid UTF-8 whatever the file name: lone surrogates (`os.fsdecode` of bytes that are not
    UTF-8) become `\\udcXX` escapes, which `json.loads` reads back as the same string."""
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def weights_load_error(model: str, error: BaseException) -> str | None:
    """A message for a checkpoint whose weight file cannot be read (truncated, corrupt, not a weight file), or `None`
    when `error` is not that kind of failure."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        SafetensorError = ()  # noqa: N806
    corrupt = isinstance(error, (SafetensorError, pickle.UnpicklingError, EOFError)) or (
        isinstance(error, RuntimeError) and "PytorchStreamReader" in str(error)
    )
    if not corrupt:
        return None
    names = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
    found = [os.path.join(model, name) for name in names if os.path.isfile(os.path.join(model, name))]
    where = " or ".join(found) if found else f"the weight file of {model!r}"
    if isinstance(error, pickle.UnpicklingError):
        # torch's own message suggests weights_only=False, which would run whatever code the pickle holds
        detail = (
            "torch.load(weights_only=True) refused it; do not load it with weights_only=False unless you trust its "
            "source: that runs the code a pickle may hold"
        )
    else:
        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return (
        f"Could not read the weights in {where}: the file is truncated or corrupt (an interrupted download or copy), "
        f"or not a weight file ({detail}). Copy or download the checkpoint again, or save it again from the model."
    )


class _Writer:
    def __init__(self, stream: TextIO, fmt: str, char_details: bool):
        self.stream, self.format, self.char_details = stream, fmt, char_details
        self.table_rows: list[tuple[str, str, float]] = []
        if fmt == "tsv":
            stream.write("path\ttext\tscore\n")

    def write(self, path: str, result: dict) -> None:
        text, score = result["generated_text"], result["score"]
        if self.format == "jsonl":
            record = {"path": path, "text": text, "score": round(score, 6)}
            if self.char_details:
                record["chars"] = result["chars"]
            self.stream.write(jsonl_record(record) + "\n")
        elif self.format == "tsv":
            self.stream.write(f"{tsv_field(path)}\t{tsv_field(text)}\t{score:.4f}\n")
        else:
            self.table_rows.append((tsv_field(path), tsv_field(text), score))

    def close(self) -> None:
        if self.format == "table" and self.table_rows:
            path_width = min(60, max(len("path"), *(len(p) for p, _, _ in self.table_rows)))
            text_width = min(80, max(len("text"), *(len(t) for _, t, _ in self.table_rows)))
            self.stream.write(f"{'path':<{path_width}}  {'text':<{text_width}}  score\n")
            for path, text, score in self.table_rows:
                self.stream.write(f"{path:<{path_width}}  {text:<{text_width}}  {score:.3f}\n")
        self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mambaocr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    parser.add_argument("--model", required=True, help="checkpoint folder, PEFT adapter folder or Hub repo id")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="cast the weights to this dtype"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast with float32 weights (CPUs with AVX-512 BF16/AMX, or CUDA); images whose read hangs on a "
        "near-tie run again in float32, so the text stays float32's",
    )
    parser.add_argument(
        "--fp32_margin",
        type=float,
        default=None,
        help="with --bf16: logit gap that counts as a near-tie (0: none; default: the model's, 0.05)",
    )
    parser.add_argument("--beam_width", type=int, default=1, help="1: greedy; more: CTC prefix beam search")
    parser.add_argument("--lexicon", default=None, help="text file, one word per line: the output must be one of them")
    parser.add_argument("--allowed_chars", default=None, help="only these characters may be output")
    parser.add_argument("--blocked_chars", default=None, help="these characters are never output")
    parser.add_argument("--format", default="table", choices=["table", "tsv", "jsonl"], dest="output_format")
    parser.add_argument(
        "--char_details", action="store_true", help="per-character confidence and x-range (with --format jsonl)"
    )
    parser.add_argument("--output", default=None, help="write results here instead of stdout")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--trust_remote_code", action="store_true", help="for checkpoints used without the package")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.batch_size < 1:
        raise SystemExit("--batch_size must be at least 1.")
    if args.beam_width < 1:
        raise SystemExit("--beam_width must be at least 1.")
    if args.fp32_margin is not None and not args.fp32_margin >= 0:
        raise SystemExit("--fp32_margin must be >= 0 (0: never re-run in float32).")
    if args.bf16 and args.dtype not in (None, "float32"):
        raise SystemExit("--bf16 autocasts float32 weights: leave out --dtype (or give --dtype float32).")
    if args.char_details and args.output_format != "jsonl":
        raise SystemExit("--char_details needs --format jsonl (tables and TSV have one row per image).")
    if args.output and os.path.isdir(args.output):
        raise SystemExit(f"--output {args.output!r} is a folder: give the path of the file to write.")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise SystemExit(f"--output {args.output!r}: its folder does not exist.")
    if args.lexicon and not os.path.isfile(args.lexicon):
        raise SystemExit(f"--lexicon {args.lexicon!r} is not a file (give a text file with one word per line).")
    files, missing = expand_inputs(args.images)
    for item in missing:
        logger.warning(f"No image matches {item!r}.")
    if not files:
        logger.error("No input images found.")
        return 1

    import torch
    from tqdm.auto import tqdm
    from transformers import pipeline

    from . import PIPELINE_TASK  # registers the task
    from .decoding import character_mask

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        reader = pipeline(
            PIPELINE_TASK,
            model=args.model,
            device=args.device,
            dtype=getattr(torch, args.dtype) if args.dtype else "auto",
            trust_remote_code=args.trust_remote_code or None,
        )
    except Exception as error:
        message = weights_load_error(args.model, error)
        if message is not None:
            raise SystemExit(message) from error
        if isinstance(error, RuntimeError):  # e.g. --device cuda on a machine without CUDA
            raise SystemExit(f"Could not put the model on --device {args.device!r}: {error}") from error
        if not isinstance(error, (OSError, ValueError)):
            raise
        raise SystemExit(
            f"Could not load the model {args.model!r}: give a checkpoint folder (with config.json), a PEFT adapter "
            f"folder or a Hub repo id (offline, it must be in the local Hub cache).\n{error}"
        ) from error
    options = {"beam_width": args.beam_width, "output_char_details": args.char_details}
    if args.bf16:
        options.update(bf16=True, fp32_margin=args.fp32_margin)  # None: the pipeline's default
    try:  # bad options end the run with their message, before any work
        if args.lexicon:
            options["lexicon"] = reader.processor.build_lexicon(args.lexicon)
        if args.allowed_chars or args.blocked_chars:
            character_mask(reader.processor.tokenizer.get_vocab(), args.allowed_chars, args.blocked_chars)
            options.update(allowed_chars=args.allowed_chars, blocked_chars=args.blocked_chars)
    except ValueError as error:
        raise SystemExit(str(error)) from error

    stream = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    writer = _Writer(stream, args.output_format, args.char_details)
    skipped: list[tuple[str, str]] = []
    done = 0
    progress = tqdm(total=len(files), desc="recognising", unit="img", disable=args.quiet or len(files) < 2)
    try:
        chunk = max(args.batch_size * 4, 64)  # read a few batches ahead so bad files drop out before batching
        for start in range(0, len(files), chunk):
            readable = list(_readable(files[start : start + chunk], skipped))
            if readable:
                results = reader([image for _, image in readable], batch_size=args.batch_size, **options)
                for (path, _), result in zip(readable, results):
                    writer.write(path, result)
                done += len(readable)
            progress.update(min(chunk, len(files) - start))
    finally:
        progress.close()
        writer.close()
        if args.output:
            stream.close()
    if skipped:
        logger.warning(f"{len(skipped)} of {len(files)} files could not be read and were skipped.")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
