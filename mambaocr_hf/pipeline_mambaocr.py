# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""`MambaOCRPipeline`: images in, text with confidences out.

`import mambaocr_hf` registers it under the task `scene-text-recognition`; saved checkpoints name it as their custom
pipeline for `image-to-text` too (transformers 5 removed that built-in task), so both work:

```python
pipeline("scene-text-recognition", model="runs/demo_cpu")
pipeline("image-to-text", model="runs/demo_cpu", trust_remote_code=True)
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers.dynamic_module_utils import custom_object_save
from transformers.image_utils import load_image
from transformers.pipelines.base import Pipeline, no_collate_fn
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator
from transformers.utils import logging

from .configuration_mambaocr import FP32_MARGIN
from .decoding import CTCLexicon, character_mask
from .image_processing_mambaocr import pad_images, to_pil_image, width_sorted_batches
from .onednn import cpu_supports_bf16

logger = logging.get_logger(__name__)

PIPELINE_TASK = "scene-text-recognition"
# a list read in batches is read this many batches at a time, each pool sorted by width
SORT_POOL_BATCHES = 16
# Written into saved checkpoints' config.json (`custom_pipelines`). Only "image-to-text": a custom entry takes
# precedence over the registry and always needs trust_remote_code, so "scene-text-recognition" stays the installed
# package's registered task.
CUSTOM_PIPELINES = {
    "image-to-text": {"impl": "pipeline_mambaocr.MambaOCRPipeline", "pt": ["AutoModelForCTC"], "type": "image"}
}


def _pad_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch single-image inputs of different widths: `pixel_values` and `pixel_mask` padded on the right to the
    widest as the image processor pads a batch (`pad_images`); the other entries concatenated."""
    batch = dict(pad_images([item["pixel_values"][0] for item in items], return_tensors="pt"))
    for key in items[0]:
        if key not in batch:
            batch[key] = torch.cat([item[key] for item in items])
    return batch


class MambaOCRPipeline(Pipeline):
    r"""
    Scene-text recognition: read the text in cropped word or line images.

    Inputs: a file path, URL, PIL image, numpy array or torch tensor, or a list of them. Images of different widths
    batch together (`batch_size > 1`): each is padded to the batch's widest and masked, so its result does not depend
    on its neighbours; a list is batched in order of width (16 batches at a time) and its results come back in its
    own order.

    Call arguments (also accepted at construction):
        beam_width (`int`, defaults to 1): 1 for greedy decoding, more for CTC prefix beam search.
        lexicon (`list[str]`, path or [`CTCLexicon`]): the output must be one of these words.
        allowed_chars / blocked_chars (`str`): characters the output may / must not contain.
        output_char_details (`bool`): add per-character `chars`: character, confidence, frame span and x-range in
            the input image's pixels.
        bf16 (`bool`, defaults to False): run the model under bf16 autocast (CPUs with AVX-512 BF16 or AMX, and
            CUDA), re-running in float32 the images whose read hangs on a near-tie, so the text stays float32's (see
            [`MambaOCRForCTC.forward_bf16`]). Unlike `dtype=torch.bfloat16`, the weights stay float32.
        fp32_margin (`float`, defaults to 0.05): the logit gap below which `bf16` re-runs an image; 0 never does.
        timeout (`float`): for URLs.

    Returns per image `{"generated_text": str, "score": float}` (plus `"chars"` on request). `score` is in [0, 1]: the
    lowest per-frame probability along the decoded alignment; reject reads below a threshold chosen on held-out data
    (see the README's reliability table).

    Example:

    ```python
    >>> from transformers import pipeline
    >>> import mambaocr_hf  # registers the task

    >>> reader = pipeline("scene-text-recognition", model="runs/demo_cpu")  # doctest: +SKIP
    >>> reader(["word.png", "line.jpg"], batch_size=8)  # doctest: +SKIP
    [{'generated_text': 'hello', 'score': 0.97}, {'generated_text': 'world', 'score': 0.88}]
    ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        processor = kwargs.get("processor")
        if processor is None and kwargs.get("tokenizer") is not None and kwargs.get("image_processor") is not None:
            from .processing_mambaocr import MambaOCRProcessor

            kwargs["processor"] = MambaOCRProcessor(
                image_processor=kwargs["image_processor"], tokenizer=kwargs["tokenizer"]
            )
        model = kwargs.get("model", args[0] if args else None)
        adapter_dir = getattr(model, "mambaocr_adapter_dir", None)
        if adapter_dir is not None and (os.path.isfile(os.path.join(adapter_dir, "vocab.json"))):
            # an adapter that grew the charset carries its own processor; transformers loaded the base's
            current = kwargs.get("processor")
            processor_class = type(current) if current is not None else None
            if processor_class is not None and len(current.tokenizer) != model.config.vocab_size:
                kwargs["processor"] = processor_class.from_pretrained(adapter_dir)
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "MambaOCRPipeline needs a MambaOCRProcessor: pass `processor=` (or both `tokenizer=` and "
                "`image_processor=`), or a model path that holds the processor files."
            )

    def _sanitize_parameters(
        self,
        beam_width: int | None = None,
        lexicon=None,
        allowed_chars: str | None = None,
        blocked_chars: str | None = None,
        output_char_details: bool | None = None,
        token_min_logp: float | None = None,
        timeout: float | None = None,
        bf16: bool | None = None,
        fp32_margin: float | None = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"MambaOCRPipeline got unexpected arguments {sorted(kwargs)}.")
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        forward_params: dict[str, Any] = {}
        if bf16 is not None:
            forward_params["bf16"] = bool(bf16)
            if bf16 and self.device.type == "cpu" and not cpu_supports_bf16():
                logger.warning_once(
                    "bf16=True on a CPU without native bfloat16 (AVX-512 BF16 / AMX): it is emulated and slower than "
                    "float32 here."
                )
        if fp32_margin is not None:
            if not fp32_margin >= 0:
                raise ValueError(f"`fp32_margin` must be >= 0 (0: never re-run in float32), got {fp32_margin}.")
            forward_params["fp32_margin"] = float(fp32_margin)
        postprocess_params: dict[str, Any] = {}
        if beam_width is not None:
            if int(beam_width) < 1:
                raise ValueError(f"`beam_width` must be at least 1, got {beam_width}.")
            postprocess_params["beam_width"] = int(beam_width)
        if lexicon is not None:  # built once here, not per image
            lexicon = lexicon if isinstance(lexicon, CTCLexicon) else self.processor.build_lexicon(lexicon)
            postprocess_params["lexicon"] = lexicon
        if allowed_chars is not None or blocked_chars is not None:
            character_mask(self.processor.tokenizer.get_vocab(), allowed_chars, blocked_chars)  # fails early on typos
            postprocess_params["allowed_chars"] = allowed_chars
            postprocess_params["blocked_chars"] = blocked_chars
        if output_char_details is not None:
            postprocess_params["output_char_details"] = bool(output_char_details)
        if token_min_logp is not None:
            postprocess_params["token_min_logp"] = token_min_logp
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, images, **kwargs):
        """Recognise the text of one image (returns a dict) or of a list of images (returns a list of dicts)."""
        if images is None or (isinstance(images, (list, tuple)) and len(images) == 0):
            raise ValueError("No images given: pass an image (path, URL, PIL, array) or a non-empty list of them.")
        if isinstance(images, tuple) or getattr(images, "ndim", 0) == 4:  # a tuple, or a batch array [N, H, W, C]
            images = list(images)
        return super().__call__(images, **kwargs)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        # transformers' default collate concatenates `pixel_values` without padding, which fails for images of
        # different widths: pad and mask instead.
        if isinstance(inputs, (list, tuple)) and batch_size > 1:
            return self._width_sorted(inputs, batch_size, preprocess_params, forward_params, postprocess_params)
        if isinstance(inputs, (list, tuple)):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)
        collate_fn = no_collate_fn if batch_size == 1 else _pad_collate
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate_fn)
        model_iterator = PipelineIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _width_sorted(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        """The results of a list, read `SORT_POOL_BATCHES` batches at a time in order of width, so that a batch
        pads to a width near its own (words and lines in one list would pad most batches to a line), and given back
        in the list's order. A pool's images are preprocessed before it is read (in this process)."""
        pool_size = batch_size * SORT_POOL_BATCHES
        for start in range(0, len(inputs), pool_size):
            pool = [self.preprocess(item, **preprocess_params) for item in inputs[start : start + pool_size]]
            batches = width_sorted_batches([item["pixel_values"].shape[-1] for item in pool], batch_size)
            order = [index for batch in batches for index in batch]
            # each pool's one partial batch is its last, as the PipelineIterator's unbatching expects
            loader = DataLoader(pool, batch_sampler=batches, collate_fn=_pad_collate)
            model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
            results = [None] * len(pool)
            for index, result in zip(order, PipelineIterator(model_iterator, self.postprocess, postprocess_params)):
                results[index] = result
            yield from results

    def preprocess(self, image, timeout: float | None = None) -> dict[str, torch.Tensor]:
        if isinstance(image, str) and image.startswith(("http://", "https://", "data:image/")):
            image = load_image(image, timeout=timeout)
        elif isinstance(image, (str, os.PathLike)) and not os.path.exists(image):
            raise FileNotFoundError(f"No such image file: {os.fspath(image)!r}.")
        pil = to_pil_image(image)
        inputs = self.processor.image_processor(pil, return_tensors="pt")
        inputs = dict(inputs)
        inputs["original_width"] = torch.tensor([pil.width])
        return inputs

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], bf16: bool = False, fp32_margin: float = FP32_MARGIN
    ) -> dict[str, torch.Tensor]:
        pixel_mask = model_inputs["pixel_mask"]
        pixel_values = model_inputs["pixel_values"].to(self.dtype or torch.float32)
        forward_bf16 = getattr(self.model, "forward_bf16", None)
        if bf16 and forward_bf16 is not None:
            outputs = forward_bf16(pixel_values=pixel_values, pixel_mask=pixel_mask, fp32_margin=fp32_margin)
        else:
            if bf16:  # a checkpoint whose own code predates `forward_bf16`
                logger.warning_once("This checkpoint's model code has no `forward_bf16`: plain bf16 autocast.")
            with torch.autocast(pixel_values.device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        return {
            "logits": outputs.logits,
            "frame_lengths": outputs.frame_lengths,
            "original_width": model_inputs["original_width"],
            "resized_width": pixel_mask.sum(-1),
        }

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        beam_width: int = 1,
        lexicon: CTCLexicon | None = None,
        allowed_chars: str | None = None,
        blocked_chars: str | None = None,
        output_char_details: bool = False,
        token_min_logp: float = -9.0,
    ) -> dict[str, Any]:
        decoded = self.processor.batch_decode(
            model_outputs["logits"],
            model_outputs["frame_lengths"],
            output_char_details=True,
            beam_width=beam_width,
            lexicon=lexicon,
            allowed_chars=allowed_chars,
            blocked_chars=blocked_chars,
            token_min_logp=token_min_logp,
        )
        result: dict[str, Any] = {"generated_text": decoded.text[0], "score": decoded.scores[0]}
        if output_char_details:
            # frame f covers columns [f * stride, (f + 1) * stride) of the resized image; scale back to the input's
            stride = self.model.config.frame_stride
            scale = float(model_outputs["original_width"][0]) / float(model_outputs["resized_width"][0])
            result["chars"] = [
                {
                    **char,
                    "x_start": round(char["start_frame"] * stride * scale, 1),
                    "x_end": round(
                        min(char["end_frame"] * stride * scale, float(model_outputs["original_width"][0])), 1
                    ),
                }
                for char in decoded.char_details[0]
            ]
        return result


def save_pipeline_code(save_directory: str | os.PathLike) -> bool:
    """Make a saved checkpoint name `MambaOCRPipeline` as its `image-to-text` pipeline (`custom_pipelines` in
    config.json) and carry its code, as transformers' `Pipeline.save_pretrained` does for a custom pipeline, so that
    `pipeline("image-to-text", model=..., trust_remote_code=True)` reaches it. Only for a checkpoint that carries the
    model's code (`AutoModelForCTC` in its `auto_map`); returns whether it did.

    The model's own `save_pretrained` does not do this: the model files must not depend on the pipeline. The
    package's writers call it: `save_checkpoint` and the trainer's checkpoints.
    """
    config_file = Path(save_directory) / "config.json"
    if not config_file.is_file():  # e.g. a PEFT adapter folder
        return False
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if "AutoModelForCTC" not in (config.get("auto_map") or {}):
        return False
    config["custom_pipelines"] = CUSTOM_PIPELINES
    partial = config_file.with_name(config_file.name + ".tmp")
    partial.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, config_file)  # a checkpoint is never left with half a config.json
    custom_object_save(MambaOCRPipeline, save_directory)
    return True


__all__ = ["CUSTOM_PIPELINES", "MambaOCRPipeline", "PIPELINE_TASK", "save_pipeline_code"]
