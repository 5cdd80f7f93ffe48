# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""MambaOCR: scene-text recognition with a patched ResNet, a bidirectional Mamba encoder and CTC, as a transformers
model. Importing this package registers the classes with transformers' Auto classes."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_mambaocr import MambaOCRConfig
from .decoding import CTCLexicon
from .hub import save_checkpoint, write_model_card
from .image_processing_mambaocr import MambaOCRImageProcessor
from .mamba_lm_init import config_from_mamba_lm, init_encoder_from_mamba_lm
from .modeling_mambaocr import MambaOCRCTCOutput, MambaOCRForCTC, MambaOCRPreTrainedModel
from .onnx_export import ONNXRecognizer, export_onnx
from .peft_utils import build_lora_config, extend_charset, load_adapter, save_adapter
from .pipeline_mambaocr import PIPELINE_TASK, MambaOCRPipeline
from .processing_mambaocr import MambaOCRDecoderOutput, MambaOCRProcessor
from .tokenization_mambaocr import CHARSETS, MambaOCRTokenizer

__version__ = "0.1.0"

AutoConfig.register(MambaOCRConfig.model_type, MambaOCRConfig, exist_ok=True)
AutoModel.register(MambaOCRConfig, MambaOCRForCTC, exist_ok=True)
AutoModelForCTC.register(MambaOCRConfig, MambaOCRForCTC, exist_ok=True)
# one implementation (PIL resizing, any input type) serves whichever backend transformers asks for
AutoImageProcessor.register(
    MambaOCRConfig,
    image_processor_classes={"pil": MambaOCRImageProcessor, "torchvision": MambaOCRImageProcessor},
    exist_ok=True,
)
AutoTokenizer.register(MambaOCRConfig, tokenizer_class=MambaOCRTokenizer, exist_ok=True)
AutoProcessor.register(MambaOCRConfig, MambaOCRProcessor, exist_ok=True)

# `save_pretrained` then writes `auto_map` and copies the model code, so checkpoints load with trust_remote_code=True
# where this package is not installed.
MambaOCRConfig.register_for_auto_class()
MambaOCRForCTC.register_for_auto_class("AutoModel")
MambaOCRImageProcessor.register_for_auto_class("AutoImageProcessor")
MambaOCRTokenizer.register_for_auto_class("AutoTokenizer")
MambaOCRProcessor.register_for_auto_class("AutoProcessor")

# `pipeline("scene-text-recognition", model=...)`; saved checkpoints also name the pipeline for "image-to-text"
if PIPELINE_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=MambaOCRPipeline, pt_model=AutoModelForCTC, type="image"
    )

__all__ = [
    "CHARSETS",
    "CTCLexicon",
    "MambaOCRCTCOutput",
    "MambaOCRConfig",
    "MambaOCRDecoderOutput",
    "MambaOCRForCTC",
    "MambaOCRImageProcessor",
    "MambaOCRPipeline",
    "MambaOCRPreTrainedModel",
    "MambaOCRProcessor",
    "MambaOCRTokenizer",
    "ONNXRecognizer",
    "build_lora_config",
    "config_from_mamba_lm",
    "export_onnx",
    "extend_charset",
    "init_encoder_from_mamba_lm",
    "load_adapter",
    "save_adapter",
    "save_checkpoint",
    "write_model_card",
]
