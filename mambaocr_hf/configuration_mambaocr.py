# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""MambaOCR model configuration."""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable

from transformers import PretrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

SCAN_IMPLEMENTATIONS = ("auto", "compiled", "chunked", "reference")
SEQUENCE_MODELS = ("mamba", "bilstm", "bilstm_residual", "transformer", "none")
ADAPTER_STAGES = ("layer1", "layer2", "layer3", "layer4")
CTC_REDUCTIONS = ("mean", "sum", "none")
# Vocabulary of the default charset: 36 lower-case alphanumerics plus the CTC blank (see `tokenization_mambaocr.py`).
DEFAULT_VOCAB_SIZE = 37
# What trains, by name (`MambaOCRForCTC.apply_freeze_strategy`, the training scripts' `--freeze_strategy`).
FREEZE_STRATEGIES = ("adapters_layer4", "adapters", "frozen_backbone", "head_only", "full")
# `MambaOCRForCTC.forward_bf16`'s default (and the pipeline's): the logit gap below which a frame counts as a near-tie.
FP32_MARGIN = 0.05
# What a MambaOCR adapter folder carries of its base (see `peft_utils.save_adapter`): `mambaocr_adapter.json`, and in
# the adapter's weights the base's fingerprint (an ASCII string as a uint8 tensor), so that every route that loads
# the adapter can tell whether the base is the one it was trained on.
ADAPTER_INFO_NAME = "mambaocr_adapter.json"
BASE_FINGERPRINT_KEY = "mambaocr_base_fingerprint"


# Named variants (`MambaOCRConfig.from_preset`, `--preset` of the training scripts), registered as timm registers its
# models: one small function each, whose docstring says what it is; the registered name is the function's with "-".
PRESETS: dict[str, dict] = {}


def register_preset(function: Callable[[], dict]) -> Callable[[], dict]:
    """Register `function()`'s config arguments in `PRESETS` as `function.__name__` with `_` written `-`."""
    PRESETS[function.__name__.replace("_", "-")] = function()
    return function


@register_preset
def base() -> dict:
    """The default: resnet34, width 256, adapters of 64, 2 bidirectional Mamba layers."""
    return {}


@register_preset
def small() -> dict:
    """Trades accuracy for CPU speed: resnet18 (the same stride patch), width 192, adapters of 32."""
    return {"backbone": "resnet18", "hidden_size": 192, "adapter_size": 32}


@register_preset
def small_narrow() -> dict:
    """`small` with `layer4` narrowed to 256 channels (512 in resnet18: half of the backbone's arithmetic), residual
    branches not zero-initialised (timm's default suits ImageNet, but from random weights it keeps each frame's
    receptive field at the stem's for the first few hundred steps) and no dropout. The CPU demo's model
    (`scripts/configs/demo_cpu.json`), for training from random weights on a CPU."""
    return {
        **small(),
        "backbone_kwargs": {"zero_init_last": False, "channels": [64, 128, 256, 256]},
        "hidden_dropout": 0.0,
    }


class MambaOCRConfig(PretrainedConfig):
    r"""
    Configuration of a [`MambaOCRForCTC`]: a timm ResNet whose strides are patched so that a 32-pixel-high text image
    becomes a sequence of `width / frame_stride` frames, bottleneck adapters inside its residual blocks, a
    bidirectional Mamba sequence encoder and a CTC head.

    Args:
        backbone (`str`, *optional*, defaults to `"resnet34"`):
            Name of a timm ResNet (`resnet18`, `resnet34`, `resnet50`, `resnet34d`, `resnext50_32x4d`, ...); the
            projection is sized from its `feature_info`. Variants whose strides the patch cannot reach (blur pools,
            nested stems) are refused when the model is built.
        use_pretrained_backbone (`bool`, *optional*, defaults to `False`):
            Initialise the backbone from ImageNet weights when the model is built from this config (never when it is
            loaded with `from_pretrained`, whose checkpoint already holds trained weights). Weights come from
            `backbone_weights_path` if set, else from timm's hub entry (needs the network).
        backbone_weights_path (`str`, *optional*):
            Local `.safetensors`, `.pth` or `.bin` file with a timm state dict for `backbone`, for machines without
            network access.
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model` (e.g. `{"zero_init_last": False}`: timm starts every
            residual branch at zero, which suits ImageNet training but keeps a randomly initialised OCR backbone's
            receptive field at the stem's for the first few hundred steps).
        frame_stride (`int`, *optional*, defaults to 4):
            How many input pixel columns make one output frame: 2, 4 or 8. The stride patch always reduces the height
            by 32 (to 1 for 32-pixel images) and keeps the width at `width / frame_stride`.
        adapter_size (`int`, *optional*, defaults to 64):
            Bottleneck width of the adapters; 0 disables them.
        adapter_stages (`list[str]`, *optional*, defaults to `["layer1", "layer2", "layer3", "layer4"]`):
            ResNet stages whose residual blocks get an adapter after them.
        hidden_size (`int`, *optional*, defaults to 256):
            Width of the sequence encoder (the backbone's channels are projected to it).
        sequence_model (`str`, *optional*, defaults to `"mamba"`):
            `"mamba"` (bidirectional Mamba), `"bilstm"` (the CRNN baseline: a plain stack of bidirectional LSTMs),
            `"bilstm_residual"` (bidirectional LSTM layers in the Mamba blocks' pre-norm residual structure),
            `"transformer"` or `"none"`; the backbone and the head are the same for all of them, so ablations compare
            like with like.
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Number of sequence-encoder layers.
        state_size (`int`, *optional*, defaults to 8):
            Mamba state size N per channel. The scan's cost on CPU is proportional to `intermediate_size *
            state_size` (one exponential per channel, state and frame), so the defaults (8, and `expand=1`) are
            smaller than a language model's (16 and 2) to keep the encoder as fast as a BiLSTM of the same width.
        expand (`int`, *optional*, defaults to 1):
            Mamba expansion factor; `intermediate_size = expand * hidden_size`.
        conv_kernel (`int`, *optional*, defaults to 4):
            Kernel size of Mamba's depthwise causal convolution.
        time_step_rank (`int` or `"auto"`, *optional*, defaults to `"auto"`):
            Rank of the Δ projection; `"auto"` is `ceil(hidden_size / 16)`.
        time_step_min (`float`, *optional*, defaults to 0.001), time_step_max (`float`, *optional*, defaults to 0.1),
        time_step_floor (`float`, *optional*, defaults to 1e-4):
            Range of the initial Δ, as in Mamba.
        use_conv_bias (`bool`, *optional*, defaults to `True`), use_bias (`bool`, *optional*, defaults to `False`):
            Biases of the causal convolution and of the in/out projections.
        bidirectional (`bool`, *optional*, defaults to `True`):
            Add a reverse-direction mixer to every layer; the reverse scan starts at each image's last valid frame.
        layer_norm_epsilon (`float`, *optional*, defaults to 1e-5):
            Epsilon of the RMS norms (and of the `bilstm_residual` and `transformer` layer norms).
        num_attention_heads (`int`, *optional*, defaults to 4):
            Heads of the `"transformer"` sequence model (unused otherwise).
        hidden_dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the classifier.
        vocab_size (`int`, *optional*, defaults to 37):
            Number of CTC classes including the blank; must equal the tokenizer's `len(tokenizer)`.
        blank_id (`int`, *optional*, defaults to 0):
            Id of the CTC blank.
        ctc_loss_reduction (`str`, *optional*, defaults to `"mean"`):
            Reduction of `torch.nn.functional.ctc_loss`: `"mean"`, `"sum"` or `"none"`.
        ctc_zero_infinity (`bool`, *optional*, defaults to `True`):
            Zero infinite losses (alignments CTC cannot make) instead of letting them poison the gradients.
        image_height (`int`, *optional*, defaults to 32):
            Height every image is resized to; a multiple of 32.
        max_width (`int`, *optional*, defaults to 2048):
            Widest image, in pixels, that the image processor lets through (wider ones are down-scaled).
        num_channels (`int`, *optional*, defaults to 3):
            Channels of `pixel_values`.
        scan_implementation (`str`, *optional*, defaults to `"auto"`):
            Selective-scan implementation: `"auto"` (the fused `mamba-ssm` kernel on CUDA when installed, else the
            compiled C kernels of `cpu_kernels.py` on CPU, else the eager chunked scan), `"compiled"`, `"chunked"`,
            or `"reference"` (the plain step-by-step recurrence, slow; for debugging).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of the projection and classifier.

    Example:

    ```python
    >>> from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC

    >>> config = MambaOCRConfig(hidden_size=192, expand=2)
    >>> model = MambaOCRForCTC(config)
    >>> model.config.intermediate_size
    384
    ```
    """

    model_type = "mambaocr"

    def __init__(
        self,
        backbone: str = "resnet34",
        use_pretrained_backbone: bool = False,
        backbone_weights_path: str | None = None,
        backbone_kwargs: dict | None = None,
        frame_stride: int = 4,
        adapter_size: int = 64,
        adapter_stages: list[str] | tuple[str, ...] = ADAPTER_STAGES,
        hidden_size: int = 256,
        sequence_model: str = "mamba",
        num_hidden_layers: int = 2,
        state_size: int = 8,
        expand: int = 1,
        conv_kernel: int = 4,
        time_step_rank: int | str = "auto",
        time_step_min: float = 0.001,
        time_step_max: float = 0.1,
        time_step_floor: float = 1e-4,
        use_conv_bias: bool = True,
        use_bias: bool = False,
        bidirectional: bool = True,
        layer_norm_epsilon: float = 1e-5,
        num_attention_heads: int = 4,
        hidden_dropout: float = 0.1,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        blank_id: int = 0,
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        image_height: int = 32,
        max_width: int = 2048,
        num_channels: int = 3,
        scan_implementation: str = "auto",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.backbone = backbone
        self.use_pretrained_backbone = use_pretrained_backbone
        self.backbone_weights_path = backbone_weights_path
        self.backbone_kwargs = {} if backbone_kwargs is None else backbone_kwargs
        self.frame_stride = frame_stride
        self.adapter_size = adapter_size
        self.adapter_stages = list(adapter_stages)
        self.hidden_size = hidden_size
        self.sequence_model = sequence_model
        self.num_hidden_layers = num_hidden_layers
        self.state_size = state_size
        self.expand = expand
        self.conv_kernel = conv_kernel
        self.time_step_rank = -(-hidden_size // 16) if time_step_rank == "auto" else time_step_rank
        self.time_step_min = time_step_min
        self.time_step_max = time_step_max
        self.time_step_floor = time_step_floor
        self.use_conv_bias = use_conv_bias
        self.use_bias = use_bias
        self.bidirectional = bidirectional
        self.layer_norm_epsilon = layer_norm_epsilon
        self.num_attention_heads = num_attention_heads
        self.hidden_dropout = hidden_dropout
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        self.image_height = image_height
        self.max_width = max_width
        self.num_channels = num_channels
        self.scan_implementation = scan_implementation
        self.initializer_range = initializer_range
        kwargs.pop("intermediate_size", None)  # derived from expand * hidden_size; saved for readers only
        super().__init__(**kwargs)
        self._validate()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> MambaOCRConfig:
        """A config from a named variant of `PRESETS` (`"base"`, `"small"`, `"small-narrow"`), with any argument
        overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {list(PRESETS)}.")
        cls.check_field_names(overrides)
        # a copy: a config's `backbone_kwargs` dict must not be the registry's
        return cls(**{**copy.deepcopy(PRESETS[name]), **overrides})

    @classmethod
    def check_field_names(cls, values: dict) -> None:
        """Raise a `ValueError` naming the keys of `values` that are no config field (with the nearest field): a
        misspelt override would otherwise be stored as an attribute and the default size trained."""
        known = set(cls().to_dict())
        unknown = sorted(set(values) - known)
        if unknown:
            hints = [
                f"{key!r} (did you mean {close[0]!r}?)"
                if (close := difflib.get_close_matches(key, known, 1))
                else repr(key)
                for key in unknown
            ]
            raise ValueError(f"Unknown MambaOCRConfig fields: {', '.join(hints)}.")

    def _validate(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")

        for name in (
            "hidden_size", "state_size", "expand", "conv_kernel", "time_step_rank", "vocab_size", "num_channels",
            "max_width",
        ):  # fmt: skip
            positive(name)
        if not isinstance(self.num_hidden_layers, int) or self.num_hidden_layers < 0:
            raise ValueError(f"`num_hidden_layers` must be a non-negative integer, got {self.num_hidden_layers!r}.")
        if not isinstance(self.backbone, str) or not self.backbone.startswith(("resnet", "resnext", "seresnet")):
            raise ValueError(
                f"`backbone` must name a timm ResNet (e.g. 'resnet34', 'resnet18', 'resnet50d'), got {self.backbone!r}."
            )
        if not isinstance(self.backbone_kwargs, dict):
            raise ValueError(
                f"`backbone_kwargs` must be a dict of timm.create_model arguments, got {self.backbone_kwargs!r}."
            )
        reserved = sorted(set(self.backbone_kwargs) & {"pretrained", "num_classes", "global_pool", "features_only"})
        if reserved:
            raise ValueError(
                f"`backbone_kwargs` may not set {reserved}: MambaOCR sets them (use `use_pretrained_backbone` for "
                "ImageNet weights)."
            )
        if self.frame_stride not in (2, 4, 8):
            raise ValueError(f"`frame_stride` must be 2, 4 or 8 (pixels per output frame), got {self.frame_stride!r}.")
        if not isinstance(self.adapter_size, int) or self.adapter_size < 0:
            raise ValueError(
                f"`adapter_size` must be an integer >= 0 (0 disables adapters), got {self.adapter_size!r}."
            )
        unknown = [stage for stage in self.adapter_stages if stage not in ADAPTER_STAGES]
        if unknown:
            raise ValueError(f"`adapter_stages` may only contain {list(ADAPTER_STAGES)}, got unknown {unknown}.")
        if self.sequence_model not in SEQUENCE_MODELS:
            raise ValueError(f"`sequence_model` must be one of {list(SEQUENCE_MODELS)}, got {self.sequence_model!r}.")
        if self.sequence_model in ("bilstm", "bilstm_residual", "transformer") and self.num_hidden_layers < 1:
            raise ValueError(
                f"The {self.sequence_model} sequence model needs `num_hidden_layers` >= 1 (or sequence_model='none')."
            )
        if self.sequence_model == "transformer":
            positive("num_attention_heads")
        if self.sequence_model == "transformer" and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}) for the transformer sequence model."
            )
        if not 0 <= self.blank_id < self.vocab_size:
            raise ValueError(f"`blank_id` ({self.blank_id}) must be a valid class id in [0, {self.vocab_size}).")
        if self.ctc_loss_reduction not in CTC_REDUCTIONS:
            raise ValueError(
                f"`ctc_loss_reduction` must be one of {list(CTC_REDUCTIONS)}, got {self.ctc_loss_reduction!r}."
            )
        if not isinstance(self.image_height, int) or self.image_height < 32 or self.image_height % 32:
            raise ValueError(f"`image_height` must be a positive multiple of 32, got {self.image_height!r}.")
        if self.max_width < self.frame_stride:
            raise ValueError(f"`max_width` ({self.max_width}) must be at least `frame_stride` ({self.frame_stride}).")
        if not 0.0 < self.time_step_min <= self.time_step_max:
            raise ValueError(
                f"Need 0 < time_step_min <= time_step_max, got {self.time_step_min} and {self.time_step_max}."
            )
        if self.scan_implementation not in SCAN_IMPLEMENTATIONS:
            raise ValueError(
                f"`scan_implementation` must be one of {list(SCAN_IMPLEMENTATIONS)}, got {self.scan_implementation!r}."
            )
        if not 0.0 <= self.hidden_dropout < 1.0:
            raise ValueError(f"`hidden_dropout` must be in [0, 1), got {self.hidden_dropout}.")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"`layer_norm_epsilon` must be > 0, got {self.layer_norm_epsilon}.")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As `PretrainedConfig.from_dict`, but overrides of config fields (`from_pretrained(path, expand=3)`) go
        through `__init__`: its derived fields (`intermediate_size`) follow them and they are validated (transformers
        would set them afterwards, leaving both undone)."""
        fields = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in fields}
        return super().from_dict({**config_dict, **overrides}, **kwargs)

    @property
    def intermediate_size(self) -> int:
        """The Mamba mixer's inner width, `expand * hidden_size` (derived, so it follows either when they change)."""
        return self.expand * self.hidden_size

    @intermediate_size.setter
    def intermediate_size(self, value: int) -> None:
        if value != self.expand * self.hidden_size:
            raise ValueError(
                f"`intermediate_size` is expand * hidden_size = {self.expand * self.hidden_size}; set `expand` "
                f"(and `hidden_size`) instead of intermediate_size={value}."
            )

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["intermediate_size"] = self.intermediate_size
        return output


__all__ = ["MambaOCRConfig"]
