# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The MambaOCR demo page: a Gradio app that reads word and line crops and shows how sure the model was of each
character.

    mambaocr-demo --model runs/demo_cpu              # or: python -m mambaocr_hf.demo --model org/mambaocr
    mambaocr-demo --model runs/my_adapter --port 8080

Needs the `demo` extra (`pip install -e ".[demo]"`). Nothing reaches the network: Gradio's analytics are off unless
`GRADIO_ANALYTICS_ENABLED` says otherwise, no share link is made unless `--share` asks for one, and a local checkpoint
folder loads offline.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('The MambaOCR demo needs Gradio: pip install -e ".[demo]" (or pip install gradio).') from error

from PIL import Image

from .render import CHAR_TABLE_HEADERS, LOW_CONFIDENCE, char_rows, confidence_picture

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "runs/demo_cpu"
# A few of the project's font packages (declared dependencies) in different styles: examples render in a fraction of
# a second, where scanning every installed font takes 10-20 s.
EXAMPLE_FONT_PACKAGES = (
    "fontpkg_roboto",
    "fontpkg_pt_serif",
    "fontpkg_jetbrains_mono",
    "fontpkg_oswald",
    "fontpkg_kalam",
    "fontpkg_lato",
)
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = "#picture img { image-rendering: auto; } #status p { margin: 0; }"
DESCRIPTION = """\
# MambaOCR
Drop one or several **cropped words or text lines** (or paste one, or pick an example below). The page shows the
text, the word score (the lowest per-frame probability along the read: reject reads below a threshold), and where the
model read each character: boxes and underlines coloured by confidence (red 0 → amber 0.5 → green 1), characters
below the flag threshold marked with **!**, and each character's confidence in % under it.
"""


def _is_missing_folder(model: str) -> bool:
    """`model` names a local folder that is not there (rather than a Hub id, `org/name` or `name`)."""
    if os.path.exists(model):
        return False
    return model == DEFAULT_MODEL or os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1


def describe_load_error(model: str, error: Exception | None = None) -> str:
    """The page's message when `model` cannot be loaded (no traceback: what is wrong and what to do)."""
    if _is_missing_folder(model):
        return (
            f"The model folder `{model}` does not exist. Train the demo checkpoint with `make demo`, or start the page "
            "with `--model` naming a checkpoint folder, a PEFT adapter folder or a Hub model id."
        )
    detail = f" ({type(error).__name__}: {error})" if error is not None else ""
    return (
        f"Could not load the model `{model}`: give a checkpoint folder (with config.json), a PEFT adapter folder or a "
        f"Hub model id (offline, it must be in the local Hub cache){detail}."
    )


def load_reader(model: str, device: str | None = None):
    """The `scene-text-recognition` pipeline for a checkpoint folder, adapter folder or Hub id, or a message saying
    why it cannot be loaded: `(reader, None)` or `(None, message)`."""
    from transformers import pipeline

    from .. import PIPELINE_TASK  # registers the task

    if _is_missing_folder(model):
        return None, describe_load_error(model)
    try:
        return pipeline(PIPELINE_TASK, model=model, device=device), None
    except (OSError, ValueError, RuntimeError) as error:
        logger.warning(f"Could not load {model!r}: {error}")
        return None, describe_load_error(model, error)


def bf16_available(reader) -> bool:
    """Whether bf16 runs natively where the model is (CUDA, or a CPU with AVX-512 BF16 / AMX)."""
    if reader is None:
        return False
    if reader.device.type == "cuda":
        return True
    from ..onednn import cpu_supports_bf16

    return reader.device.type == "cpu" and cpu_supports_bf16()


def examples_folder(tokenizer=None, seed: int = 0) -> Path:
    """The folder the page's example crops are written to: one per charset and seed under the system's temporary
    directory (where Gradio may serve files from), so that every start of the app writes the same folder again
    instead of leaving a new one behind."""
    vocab = sorted(tokenizer.get_vocab()) if tokenizer is not None else []
    key = hashlib.sha1(repr((seed, vocab)).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mambaocr_demo_examples_{key}"


def render_examples(count: int, folder: str | os.PathLike, tokenizer=None, seed: int = 0) -> list[str]:
    """`count` synthetic word crops written as PNGs to `folder` (so no data files ship with the demo), in the model's
    charset when `tokenizer` is given. Each file is written whole under another name and then renamed, so an app that
    starts beside another one never serves half a file."""
    if count <= 0:
        return []
    from ..data import SyntheticTextGenerator
    from ..data.cache import remove_orphaned_partials

    fonts = []
    for package in EXAMPLE_FONT_PACKAGES:
        try:
            files = sorted(Path(str(resources.files(package))).rglob("*.ttf"))
        except (ImportError, TypeError):
            continue
        regular = [path for path in files if "Regular" in path.name and "Italic" not in path.name]
        fonts.extend(str(path) for path in (regular or files)[:1])
    generator = SyntheticTextGenerator(
        tokenizer=tokenizer,
        seed=seed,
        split="demo_examples",
        font_dirs=fonts or None,
        use_system_fonts=not fonts,
        use_package_fonts=not fonts,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphaned_partials(folder, ".example_*.*.png")
    paths = []
    for index in range(count):
        sample = generator[index]
        path = folder / f"example_{index}.png"
        partial = folder / f".example_{index}.{os.getpid()}.png"
        try:
            sample["image"].save(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        paths.append(str(path))
    return paths


@dataclass
class ReadResult:
    """What one read of the page returns, in the order of the page's outputs."""

    text: str = ""
    scores: str = ""
    picture: Image.Image | None = None
    gallery: list[tuple[Image.Image, str]] = field(default_factory=list)
    table: list[list] = field(default_factory=list)
    status: str = ""

    def outputs(self) -> tuple:
        return (
            self.text,
            self.scores,
            self.picture,
            gr.Gallery(value=self.gallery, visible=len(self.gallery) > 1),
            self.table,
            self.status,
        )


def _file_path(item: Any) -> str:
    return item if isinstance(item, str) else getattr(item, "name", None) or item["path"]


def collect_images(files: Sequence[Any] | None, pasted: Image.Image | None) -> tuple[list, list[str]]:
    """The readable images `(name, PIL image)` of the page's inputs, and a message per file that is not an image."""
    from ..image_processing_mambaocr import to_pil_image

    images, problems = [], []
    named = [] if pasted is None else [("pasted image", pasted)]
    named += [(os.path.basename(_file_path(item)), _file_path(item)) for item in files or []]
    for name, source in named:
        try:
            images.append((name, to_pil_image(source)))
        except (OSError, ValueError) as error:
            logger.info(f"Cannot read {name}: {error}")
            problems.append(f"`{name}` is not an image that can be read (PNG, JPEG, WebP, BMP, TIFF, GIF ...)")
    return images, problems


def parse_words(text: str | None) -> list[str]:
    """Lexicon words pasted one per line, or separated by spaces or commas."""
    return [word for word in (text or "").replace(",", " ").split() if word]


class DemoReader:
    """Runs the page's reads: the pipeline with the page's options, drawing and timing. One per app."""

    def __init__(self, reader, load_error: str | None = None):
        self.reader, self.load_error = reader, load_error

    def __call__(
        self,
        files: Sequence[Any] | None,
        pasted: Image.Image | None,
        beam_width: float = 1,
        lexicon: str = "",
        allowed_chars: str = "",
        blocked_chars: str = "",
        bf16: bool = False,
        threshold: float = LOW_CONFIDENCE,
    ) -> tuple:
        if self.reader is None:
            raise gr.Error(self.load_error or "No model is loaded.", print_exception=False)
        images, problems = collect_images(files, pasted)
        if not images:
            raise gr.Error(
                "; ".join(problems) + "." if problems else "Upload or paste an image of a word or a text line first.",
                print_exception=False,
            )
        options: dict[str, Any] = {"beam_width": max(1, int(beam_width)), "output_char_details": True}
        try:
            if parse_words(lexicon):
                options["lexicon"] = self.reader.processor.build_lexicon(parse_words(lexicon))
            if allowed_chars or blocked_chars:
                options.update(allowed_chars=allowed_chars or None, blocked_chars=blocked_chars or None)
            if bf16:
                options["bf16"] = True
            start = time.perf_counter()
            results = self.reader([image for _, image in images], batch_size=min(8, len(images)), **options)
            elapsed = time.perf_counter() - start
        except ValueError as error:  # bad options: an empty lexicon, characters the charset lacks
            raise gr.Error(str(error), print_exception=False) from error
        if isinstance(results, dict):
            results = [results]
        result = ReadResult()
        pictures = []
        for (name, image), read in zip(images, results):
            pictures.append(confidence_picture(image, read["chars"], threshold))
            result.table.extend(char_rows(name, read["chars"], threshold))
        result.text = "\n".join(read["generated_text"] for read in results)
        result.scores = "\n".join(f"{read['score']:.3f}" for read in results)
        result.picture = pictures[0]
        result.gallery = [
            (picture, f"{name}: {read['generated_text']!r} ({read['score']:.2f})")
            for (name, _), picture, read in zip(images, pictures, results)
        ]
        mode = "greedy" if options["beam_width"] == 1 else f"beam width {options['beam_width']}"
        if "lexicon" in options:
            mode += f", lexicon of {len(options['lexicon'])} words"
        count = f"{len(images)} image{'s' if len(images) > 1 else ''}"
        result.status = (
            f"Read {count} in **{elapsed:.2f} s** ({1000 * elapsed / len(images):.0f} ms per image; {mode}, "
            f"{'bf16' if bf16 else 'float32'})."
        )
        if problems:
            result.status += " Skipped: " + "; ".join(problems) + "."
        return result.outputs()

    def read_pasted(self, pasted, *args) -> tuple:
        """The pasted image or picked example, read as soon as it arrives (nothing to do when it is cleared)."""
        if pasted is None:
            return tuple(gr.skip() for _ in range(6))
        return self(None, pasted, *args)


def _model_banner(model: str, reader, load_error: str | None) -> str:
    if reader is None:
        return f"**⚠ No model loaded.** {load_error}"
    config = reader.model.config
    tokenizer = reader.processor.tokenizer
    return (
        f"Model `{model}` · {config.backbone} backbone · charset of "
        f"{len(tokenizer) - 1} characters · one CTC frame per {config.frame_stride} px · {reader.device}"
    )


def build_demo(
    model_path: str | None = None,
    *,
    reader=None,
    device: str | None = None,
    num_examples: int = 6,
    examples_seed: int = 0,
    title: str = "MambaOCR demo",
) -> gr.Blocks:
    """The demo page as a Gradio `Blocks` (not launched: call [`launch_demo`] or `.launch()`).

    Args:
        model_path: a checkpoint folder, a PEFT adapter folder or a Hub model id (default: `runs/demo_cpu`, what
            `make demo` trains). A model that cannot be loaded gives a page that says why (and how to get one) instead
            of an exception.
        reader: an already built `scene-text-recognition` pipeline to use instead of loading `model_path`.
        device: where to load the model (`"cpu"`, `"cuda"`, ...; default: CPU).
        num_examples: synthetic example crops rendered for the page (0: none).
        examples_seed: the examples' seed.
        title: the browser tab's title.

    Returns:
        The `gr.Blocks` app. Its one API endpoint, `/read`, takes the page's inputs (files, pasted image, beam width,
        lexicon, allowed and blocked characters, bf16, flag threshold) and returns the text, scores, confidence
        picture, gallery, character table and status line.
    """
    load_error = None
    if reader is None:
        model_path = model_path or DEFAULT_MODEL
        reader, load_error = load_reader(model_path, device)
    else:
        model_path = model_path or reader.model.name_or_path
    runner = DemoReader(reader, load_error)
    native_bf16 = bf16_available(reader)
    example_paths: list[str] = []
    if num_examples > 0:
        tokenizer = reader.processor.tokenizer if reader is not None else None
        folder = examples_folder(tokenizer, examples_seed)
        example_paths = render_examples(num_examples, folder, tokenizer, examples_seed)

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(DESCRIPTION)
        gr.Markdown(_model_banner(model_path, reader, load_error), elem_id="model_info")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(
                    file_count="multiple", label="Upload word or line crops (one or several)", elem_id="upload"
                )
                pasted = gr.Image(
                    type="pil", sources=["upload", "clipboard"], label="… or paste / drop one image", elem_id="paste"
                )
                with gr.Accordion("Decoding options", open=False):
                    beam_width = gr.Slider(1, 32, value=1, step=1, label="Beam width (1 = greedy)", elem_id="beam")
                    lexicon = gr.Textbox(
                        label="Lexicon: the output must be one of these words",
                        placeholder="one word per line (or separated by spaces / commas); empty: any text",
                        lines=3,
                        elem_id="lexicon",
                    )
                    with gr.Row():
                        allowed = gr.Textbox(
                            label="Allowed characters", placeholder="e.g. 0123456789", elem_id="allowed"
                        )
                        blocked = gr.Textbox(label="Blocked characters", elem_id="blocked")
                    bf16 = gr.Checkbox(
                        value=False,
                        label="bf16",
                        info="bf16 autocast, near-ties re-run in float32"
                        if native_bf16
                        else "this machine has no native bf16 (AVX-512 BF16 / AMX or CUDA): off",
                        interactive=native_bf16,
                        elem_id="bf16",
                    )
                    threshold = gr.Slider(
                        0.0, 1.0, value=LOW_CONFIDENCE, step=0.05, label="Flag characters below", elem_id="threshold"
                    )
                read = gr.Button("Read", variant="primary", elem_id="read")
            with gr.Column(scale=3):
                text = gr.Textbox(label="Text", lines=1, max_lines=20, elem_id="text", buttons=["copy"])
                scores = gr.Textbox(label="Word score", lines=1, max_lines=20, elem_id="score")
                picture = gr.Image(label="Where each character was read", type="pil", format="png", elem_id="picture")
                gallery = gr.Gallery(
                    label="All images", columns=2, object_fit="contain", visible=False, format="png", elem_id="gallery"
                )
                status = gr.Markdown(elem_id="status")
        table = gr.Dataframe(
            headers=CHAR_TABLE_HEADERS,
            datatype=["str", "number", "str", "number", "number", "number", "str"],
            label="Per-character confidence (x in the input image's pixels)",
            interactive=False,
            elem_id="chars",
        )
        options = [beam_width, lexicon, allowed, blocked, bf16, threshold]
        outputs = [text, scores, picture, gallery, table, status]
        # one read at a time, whichever event asks (the model is one, and parallel reads only share its cores)
        gr.on(
            [read.click, files.upload],
            runner,
            [files, pasted, *options],
            outputs,
            api_name="read",
            concurrency_limit=1,
            concurrency_id="read",
        )
        pasted.change(
            runner.read_pasted,
            [pasted, *options],
            outputs,
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="read",
        )
        if example_paths:
            gr.Examples(
                example_paths, inputs=[pasted], label="Synthetic examples (rendered by the app)", elem_id="examples"
            )
    return demo


def launch_demo(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False, **kwargs):
    """`demo.launch` with the page's theme; prints the local URL (Gradio does), never makes a share link unless
    `share=True`."""
    return demo.launch(server_name=host, server_port=port, share=share, theme=THEME, css=CSS, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mambaocr-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("MAMBAOCR_MODEL", DEFAULT_MODEL),
        help=f"checkpoint folder, PEFT adapter folder or Hub model id (default: $MAMBAOCR_MODEL or {DEFAULT_MODEL})",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for other machines)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--examples", type=int, default=6, help="synthetic example crops to render")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (needs network)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    demo = build_demo(args.model, device=args.device, num_examples=args.examples)
    launch_demo(demo, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
