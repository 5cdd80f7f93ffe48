# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""PyTorch MambaOCR: a stride-patched timm ResNet with bottleneck adapters, a bidirectional Mamba encoder and CTC."""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
from dataclasses import dataclass

import timm
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .backbone_cpu import FusedCPUInference, kernel_width, mask_columns
from .bf16_inference import MambaOCRBf16InferenceMixin
from .configuration_mambaocr import BASE_FINGERPRINT_KEY, MambaOCRConfig
from .freezing import MambaOCRFreezingMixin
from .model_inputs import check_pixel_values, compute_ctc_loss, frame_lengths_from_pixels, valid_pixels_from_mask
from .model_loading import (
    check_adapter_base,
    check_head_rows,
    check_vocab_matches_head,
    load_backbone_weights,
    read_adapter,
    warn_if_other_base,
)
from .onednn import linear
from .scan_paths import ScanPath, select_scan
from .selective_scan import is_exporting, is_tracing

logger = logging.get_logger(__name__)

# Set while `from_pretrained` builds the model: the checkpoint holds trained weights, so the ImageNet backbone must not
# be fetched (it would need the network and be overwritten anyway).
_LOADING_CHECKPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "mambaocr_loading_checkpoint", default=False
)

# Guards what the backbone changes lazily during a call (the channels-last weights, the padding hooks of layers added
# later) against concurrent calls from several threads; `FusedCPUInference` guards its folded weights itself.
_LAZY_STATE_LOCK = threading.RLock()


@dataclass
class MambaOCRCTCOutput(ModelOutput):
    """
    Output of [`MambaOCRForCTC`].

    Args:
        loss (`torch.FloatTensor` of shape `()` or `(batch_size,)`, *optional*, returned when `labels` are given):
            CTC loss (float32), reduced as `config.ctc_loss_reduction` says.
        logits (`torch.FloatTensor` of shape `(batch_size, num_frames, vocab_size)`):
            Per-frame class scores before softmax. Frames past an image's `frame_lengths` are padding: their blank
            score is 0 and every other class is a large negative number, so they decode to nothing.
        frame_lengths (`torch.LongTensor` of shape `(batch_size,)`):
            Number of valid frames of each image (its true width divided by `config.frame_stride`).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            Sequence features after the projection and after each encoder layer, `(batch_size, num_frames, hidden)`.
            The `bilstm` and `transformer` encoders run their layers as one torch module and give the features after
            the projection and after the whole encoder (2 entries); `none` gives the projection's (1);
            `bilstm_residual` gives one per layer, as `mamba` does.
        fp32_rerun (`torch.BoolTensor` of shape `(batch_size,)`, *optional*, returned by [`MambaOCRForCTC.forward_bf16`]):
            Which images were run again in float32.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    frame_lengths: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    fp32_rerun: torch.BoolTensor | None = None


class MambaOCRAdapter(nn.Module):
    """Bottleneck adapter (1×1 down-projection, ReLU, 1×1 up-projection) with a residual connection.

    The up-projection starts at zero, so a freshly injected adapter is the identity and a pretrained backbone's
    features are unchanged until training moves it. 1×1 convolutions never mix columns, so padding cannot leak.
    """

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.down = nn.Conv2d(channels, bottleneck, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.up = nn.Conv2d(bottleneck, channels, kernel_size=1)
        self.up.zero_init = True  # read by `_init_weights`: the adapter starts as the identity

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if (
            type(self.down) is nn.Conv2d
            and type(self.up) is nn.Conv2d
            and hidden_states.is_contiguous(memory_format=torch.channels_last)
        ):
            # channels-last (the backbone's layout on CPU): a 1×1 convolution is a matrix product over the channels
            # of each position, and as one takes half the time (docs/speed.md)
            rows = hidden_states.permute(0, 2, 3, 1)  # [batch, height, width, channels], a view
            rows = F.relu(linear(rows, self.down.weight.flatten(1), self.down.bias))
            return hidden_states + linear(rows, self.up.weight.flatten(1), self.up.bias).permute(0, 3, 1, 2)
        return hidden_states + self.up(self.act(self.down(hidden_states)))


def _patch_stride(module: nn.Module, width_stride: int) -> None:
    """Turn every 2×2-strided conv / average pool of `module` into (2, `width_stride`): height halves, width does not."""
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d) and tuple(sub.stride) == (2, 2):
            sub.stride = (2, width_stride)
        elif isinstance(sub, nn.AvgPool2d) and sub.stride in (2, (2, 2)):  # timm's `avg_down` shortcut
            sub.kernel_size = (2, width_stride)
            sub.stride = (2, width_stride)


# The padding of the backbone call running in this thread (or asyncio task), `(valid_pixels [batch], input_width)`,
# read by the padding masks inside timm's blocks (docs/architecture.md: why a context variable).
_PADDING: contextvars.ContextVar[tuple[torch.Tensor, int] | None] = contextvars.ContextVar(
    "mambaocr_padding", default=None
)


@contextlib.contextmanager
def _padding_columns(valid_pixels: torch.Tensor | None, input_width: int):
    """Scope in which the backbone's padding masks zero the columns past each image's `valid_pixels` (of an input
    `input_width` wide); `valid_pixels=None` turns them off."""
    token = _PADDING.set(None if valid_pixels is None else (valid_pixels, input_width))
    try:
        yield
    finally:
        _PADDING.reset(token)


def _padding_mask_hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    """Forward pre-hook of a column-mixing backbone layer: zeroes its input's padding columns (see
    `MambaOCRBackbone`)."""
    padding = _PADDING.get()
    if padding is None:
        return None
    return (mask_columns(args[0], *padding),) + tuple(args[1:])


class MambaOCRBackbone(nn.Module):
    """A timm ResNet that maps a `[batch, channels, 32, width]` image to `width / frame_stride` frames.

    * **Stride patch**: the stem and max-pool keep their 2×2 strides (height and width / 4); `layer2`-`layer4` stride
      only the height (2×1), so a 32-pixel-high image ends at height 1 with `width / 4` columns. `frame_stride` 2 or 8
      moves the max-pool or `layer2` width stride.
    * **Adapters** after every residual block of `config.adapter_stages` (stored beside timm's modules so that timm's
      parameter names, and so its pretrained weights, stay as they are).
    * **Width masking**: before every operation that mixes neighbouring columns (convolutions wider than 1, pools)
      the columns past an image's true width are zeroed. That is exactly the zero padding the image would get alone,
      so an image's features do not depend on how much padding its batch adds. This holds in eval mode; in training,
      BatchNorm's batch statistics also see the (zeroed) padding columns.
    """

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.config = config
        try:
            self.body = timm.create_model(
                config.backbone,
                pretrained=False,
                num_classes=0,
                global_pool="",
                in_chans=config.num_channels,
                **config.backbone_kwargs,
            )
        except TypeError as error:  # an argument this timm model does not take
            raise ValueError(
                f"timm '{config.backbone}' does not accept `backbone_kwargs` {config.backbone_kwargs} ({error})."
            ) from error
        if not all(hasattr(self.body, name) for name in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")):
            raise ValueError(f"`{config.backbone}` is not a timm ResNet (no conv1/maxpool/layer1-4).")
        if config.frame_stride == 2:
            self.body.maxpool.stride = (2, 1)
        for stage in ("layer2", "layer3", "layer4"):
            width_stride = 2 if (stage == "layer2" and config.frame_stride == 8) else 1
            _patch_stride(getattr(self.body, stage)[0], width_stride)
        self.num_features = self.body.feature_info[-1]["num_chs"]
        self.adapters = nn.ModuleDict()
        if config.adapter_size > 0:
            for stage in config.adapter_stages:
                blocks = getattr(self.body, stage)
                self.adapters[stage] = nn.ModuleList(
                    MambaOCRAdapter(_block_out_channels(block), config.adapter_size) for block in blocks
                )
        self._warned_width_multiple = False
        self._cpu_inference = FusedCPUInference(padding_hook=_padding_mask_hook)  # folded weights, built on first use
        self._install_padding_masks()
        self.gradient_checkpointing = False
        self._check_stride_patch()

    @torch.no_grad()
    def _check_stride_patch(self) -> None:
        """Some timm ResNet variants (blur pools, nested stems) do not take the patch: refuse them clearly."""
        device = next(self.body.parameters()).device
        width = 16 * self.config.frame_stride
        probe = torch.zeros(1, self.config.num_channels, 32, width, device=device)
        was_training = self.training
        self.eval()
        try:
            shape = tuple(self.body.forward_features(probe).shape[2:])
        except RuntimeError as error:
            raise ValueError(f"timm '{self.config.backbone}' cannot be stride-patched ({error}).") from error
        finally:
            self.train(was_training)
        if shape != (1, 16):
            raise ValueError(
                f"The stride patch does not work for timm '{self.config.backbone}': a 32x{width} image gives "
                f"{shape[0]}x{shape[1]} features instead of 1x16. Use a plain ResNet (resnet18/34/50, their 'd' "
                "variants)."
            )

    def _install_padding_masks(self) -> None:
        """Hook every column-mixing layer of the ResNet that has no padding mask yet. Also run before each forward:
        layers added after construction (PEFT LoRA's `lora_A` convolutions, which read the block's input beside the
        masked base layer) get their mask too."""
        with _LAZY_STATE_LOCK:
            for module in self.body.modules():
                if (
                    isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
                    and kernel_width(module) > 1
                    and _padding_mask_hook not in module._forward_pre_hooks.values()
                ):
                    module.register_forward_pre_hook(_padding_mask_hook)

    def load_pretrained_weights(self) -> None:
        """Load ImageNet weights into the ResNet (adapters stay at their identity initialisation)."""
        load_backbone_weights(self.body, self.config)

    def _run_stage_block(
        self,
        hidden_states: torch.Tensor,
        valid_pixels: torch.Tensor | None,
        input_width: int,
        block: nn.Module,
        adapter: nn.Module,
    ) -> torch.Tensor:
        # the padding is passed in: a checkpointed block is recomputed during backward, after the forward has returned
        # (and, on GPUs, in autograd's own thread)
        with _padding_columns(valid_pixels, input_width):
            hidden_states = block(hidden_states)
        return adapter(hidden_states) if adapter is not None else hidden_states

    @torch.no_grad()
    def _use_channels_last(self) -> None:
        """Stores the 4-D weights channels-last, in place (the same `Parameter` objects, so optimizers and PEFT are
        unaffected). On CPU oneDNN runs channels-last convolutions without reordering activations, faster in float32
        and more so in bf16 (docs/architecture.md). Checkpoints are saved and load as usual."""
        with _LAZY_STATE_LOCK:  # once, not by two threads at a time
            for parameter in self.parameters():
                if parameter.dim() == 4 and not parameter.is_contiguous(memory_format=torch.channels_last):
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> MambaOCRBackbone:
        self._cpu_inference.reset()
        return super().train(mode)

    def forward(self, pixel_values: torch.Tensor, valid_pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Returns frame features `[batch, width / frame_stride, num_features]`.

        `valid_pixels` (`[batch]`) is each image's true width; `None` means no padding.
        """
        input_width = pixel_values.shape[-1]
        if not is_tracing():
            self._install_padding_masks()
        if valid_pixels is not None and not is_tracing() and bool((valid_pixels >= input_width).all()):
            valid_pixels = None  # nothing is padded: skip the masks
        if valid_pixels is not None and not is_tracing() and not self._warned_width_multiple:
            stride = self.config.frame_stride
            if input_width % stride or bool((valid_pixels % stride != 0).any()):
                self._warned_width_multiple = True  # a once-only warning: a race at worst gives it twice
                logger.warning(
                    f"Padded images whose widths are not multiples of frame_stride={stride}: the stride-2 "
                    "poolings then average a padding column into an image's last frame, so it reads slightly "
                    "differently than alone. Pad with `MambaOCRImageProcessor.for_model_config(config)` (widths "
                    f"rounded to {stride}); checkpoints saved by the training scripts already do."
                )
        if pixel_values.device.type == "cpu" and not is_tracing() and not is_exporting():
            self._use_channels_last()
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        # inference on CPU: BatchNorm folded, oneDNN's fused convolutions (`None` where that does not apply)
        hidden_states = self._cpu_inference(self.body, self.adapters, pixel_values, valid_pixels)
        if hidden_states is not None:
            return hidden_states.mean(dim=2).transpose(1, 2)
        body = self.body
        with _padding_columns(valid_pixels, input_width):
            hidden_states = body.act1(body.bn1(body.conv1(pixel_values)))
            hidden_states = body.maxpool(hidden_states)
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            adapters = self.adapters[stage] if stage in self.adapters else None
            for index, block in enumerate(getattr(body, stage)):
                adapter = adapters[index] if adapters is not None else None
                if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                    hidden_states = checkpoint(
                        _ForwardOnceStats(self._run_stage_block, block, adapter),
                        hidden_states,
                        valid_pixels,
                        input_width,
                        block,
                        adapter,
                        use_reentrant=False,
                    )
                else:
                    hidden_states = self._run_stage_block(hidden_states, valid_pixels, input_width, block, adapter)
        # [batch, channels, height, frames] -> [batch, frames, channels]; height is 1 for 32-pixel images
        return hidden_states.mean(dim=2).transpose(1, 2)


class _ForwardOnceStats:
    """A checkpointed function whose BatchNorms update their running statistics once, not again when backward
    recomputes it (docs/architecture.md)."""

    def __init__(self, function, *modules: nn.Module | None):
        self.function, self.modules, self.calls = function, modules, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1:
            return self.function(*args)
        # the recomputation: keep the statistics the first run left
        stats = [
            buffer
            for parent in self.modules
            if parent is not None
            for module in parent.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
            if buffer is not None
        ]
        saved = [buffer.clone() for buffer in stats]
        try:
            return self.function(*args)
        finally:
            with torch.no_grad():
                for buffer, before in zip(stats, saved):
                    buffer.copy_(before)


def _block_out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    last = getattr(block, "conv3", None) or getattr(block, "conv2", None) or convs[-1]
    return last.out_channels


# Sequence encoders


class MambaOCRRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.float()
        hidden_states = hidden_states * torch.rsqrt(
            hidden_states.pow(2).mean(-1, keepdim=True) + self.variance_epsilon
        )
        return self.weight * hidden_states.to(input_dtype)


class MambaOCRMixer(nn.Module):
    """Bidirectional Mamba-1 selective state-space mixer (the "bidirectional Mamba" block of Vision Mamba).

    The forward direction's parameters have the names and shapes of transformers' `MambaMixer` (`in_proj`, `conv1d`,
    `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`), so a layer of a pretrained `MambaForCausalLM` maps onto it one to
    one. The reverse direction shares `in_proj` (and so the gate) and `out_proj`, and has its own `conv1d_reverse`,
    `x_proj_reverse`, `dt_proj_reverse`, `A_log_reverse` and `D_reverse`; it reads each sequence reversed within its
    own length, so it starts at the image's last valid frame. The two directions' gated outputs are averaged before
    `out_proj`. Sharing the projections keeps the layer's matrix work that of a one-directional Mamba.
    """

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.ssm_state_size = config.state_size
        self.time_step_rank = config.time_step_rank
        self.bidirectional = config.bidirectional
        self.in_proj = nn.Linear(self.hidden_size, 2 * self.intermediate_size, bias=config.use_bias)
        self.out_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=config.use_bias)
        for suffix in ("", "_reverse") if self.bidirectional else ("",):
            setattr(
                self,
                f"conv1d{suffix}",
                nn.Conv1d(
                    self.intermediate_size,
                    self.intermediate_size,
                    kernel_size=config.conv_kernel,
                    groups=self.intermediate_size,
                    padding=config.conv_kernel - 1,
                    bias=config.use_conv_bias,
                ),
            )
            setattr(
                self,
                f"x_proj{suffix}",
                nn.Linear(self.intermediate_size, self.time_step_rank + 2 * self.ssm_state_size, bias=False),
            )
            setattr(self, f"dt_proj{suffix}", nn.Linear(self.time_step_rank, self.intermediate_size, bias=True))
            setattr(self, f"A_log{suffix}", nn.Parameter(torch.empty(self.intermediate_size, self.ssm_state_size)))
            setattr(self, f"D{suffix}", nn.Parameter(torch.empty(self.intermediate_size)))

    @torch.no_grad()
    def init_mamba_weights(self) -> None:
        """S4D-real A, unit D and Δ initialised log-uniformly in [time_step_min, time_step_max], as in Mamba."""
        config = self.config
        for suffix in ("", "_reverse") if self.bidirectional else ("",):
            A = torch.arange(1, self.ssm_state_size + 1, dtype=torch.float32).expand(self.intermediate_size, -1)
            init.copy_(getattr(self, f"A_log{suffix}"), torch.log(A))
            init.ones_(getattr(self, f"D{suffix}"))
            dt_proj = getattr(self, f"dt_proj{suffix}")
            dt_init_std = self.time_step_rank**-0.5
            init.uniform_(dt_proj.weight, -dt_init_std, dt_init_std)
            dt = torch.exp(
                torch.rand(self.intermediate_size) * (math.log(config.time_step_max) - math.log(config.time_step_min))
                + math.log(config.time_step_min)
            ).clamp(min=config.time_step_floor)
            init.copy_(dt_proj.bias, dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            conv1d = getattr(self, f"conv1d{suffix}")
            init.kaiming_uniform_(conv1d.weight, a=math.sqrt(5))
            if conv1d.bias is not None:
                init.zeros_(conv1d.bias)

    def directional(self, name: str) -> list[nn.Module | torch.Tensor]:
        """The parameter or layer `name` of each direction: forward, then (bidirectional) reverse."""
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        return [getattr(self, f"{name}{suffix}") for suffix in suffixes]

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_lengths: torch.LongTensor | None = None,
        scan: ScanPath | None = None,
    ) -> torch.Tensor:
        """`[batch, seq_len, hidden]` → `[batch, seq_len, hidden]`; frames past `frame_lengths` are padding. `scan` is
        the path `select_scan` chose for this call (chosen here if not given)."""
        batch, seq_len, _ = hidden_states.shape
        if frame_lengths is None:
            frame_lengths = torch.full((batch,), seq_len, dtype=torch.long, device=hidden_states.device)
        scan = (scan or select_scan(self.config, hidden_states.device)).for_mixer(self)
        x, gate = scan.linear(self.in_proj, hidden_states).chunk(2, dim=-1)  # [batch, seq_len, intermediate] each
        u = scan.conv(self, x, frame_lengths)  # causal depthwise convolution + SiLU, each direction
        y = scan.scan(self, u, gate, frame_lengths)  # (selective scan + D·u) ⊙ silu(gate), directions averaged
        return scan.linear(self.out_proj, y.to(hidden_states.dtype))


class MambaOCRBlock(GradientCheckpointingLayer):
    """Pre-norm residual block around the (bidirectional) mixer: `x + mixer(norm(x))`."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.norm = MambaOCRRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = MambaOCRMixer(config)

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, scan: ScanPath | None = None
    ) -> torch.Tensor:
        return hidden_states + self.mixer(self.norm(hidden_states), frame_lengths, scan)


class MambaOCRMambaEncoder(nn.Module):
    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(MambaOCRBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_f = MambaOCRRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        all_hidden = (hidden_states,) if output_hidden_states else ()
        scan = select_scan(self.config, hidden_states.device)  # one path for every layer of this call
        for layer in self.layers:
            hidden_states = layer(hidden_states, frame_lengths, scan)
            if output_hidden_states:
                all_hidden += (hidden_states,)
        return self.norm_f(hidden_states), all_hidden


def _bidirectional_lstm(config: MambaOCRConfig, num_layers: int) -> nn.LSTM:
    if config.hidden_size % 2:
        raise ValueError(
            f"The {config.sequence_model} sequence model needs an even `hidden_size`, got {config.hidden_size}."
        )
    return nn.LSTM(
        config.hidden_size, config.hidden_size // 2, num_layers=num_layers, bidirectional=True, batch_first=True
    )


def _run_lstm(lstm: nn.LSTM, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
    """`lstm` (bidirectional, batch first) over each image's valid frames only, so the reverse direction starts at
    its last valid frame; padding frames come back as zeros.

    The result is that of `lstm` on the packed sequences (`pack_padded_sequence`), computed without packing: each
    direction of each layer runs on the padded batch (the forward direction on the frames as they are, where the
    padding follows every valid frame, the reverse on each sequence reversed within its own length), so the call
    takes oneDNN's fused LSTM kernel (in bf16 under CPU autocast), where a packed batch of unequal lengths runs the
    frame-by-frame fallback in float32 (which made a padded training step of the demo's small model 20% longer, of a
    batch of text lines 48% longer)."""
    batch, seq_len, _ = hidden_states.shape
    device = hidden_states.device
    positions = torch.arange(seq_len, device=device)[None, :]
    lengths = frame_lengths.to(device)[:, None]
    valid = positions < lengths
    # indexes each sequence's valid frames in reverse order, its padding frames where they are (twice: the identity)
    reversal = (torch.arange(batch, device=device)[:, None], torch.where(valid, lengths - 1 - positions, positions))
    zeros = hidden_states.new_zeros(1, batch, lstm.hidden_size)
    output = hidden_states
    for layer in range(lstm.num_layers):
        directions = []
        for suffix, reverse in (("", False), ("_reverse", True)):
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if lstm.bias else ("weight_ih", "weight_hh")
            weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
            inputs = output[reversal] if reverse else output
            result = torch.lstm(inputs, (zeros, zeros), weights, lstm.bias, 1, 0.0, lstm.training, False, True)[0]
            directions.append(result[reversal] if reverse else result)
        output = torch.cat(directions, dim=-1)
        if lstm.dropout and lstm.training and layer < lstm.num_layers - 1:
            output = nn.functional.dropout(output, lstm.dropout)
    return output * valid[..., None].to(output.dtype)


class MambaOCRLSTMEncoder(nn.Module):
    """The CRNN baseline: a stacked bidirectional LSTM over the packed (unpadded) sequences."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.lstm = _bidirectional_lstm(config, config.num_hidden_layers)

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output = _run_lstm(self.lstm, hidden_states, frame_lengths)
        return output, ((hidden_states, output) if output_hidden_states else ())


class MambaOCRLSTMBlock(GradientCheckpointingLayer):
    """`MambaOCRBlock` with a one-layer bidirectional LSTM as the mixer: `x + lstm(layer_norm(x))`."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.lstm = _bidirectional_lstm(config, 1)

    def forward(self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
        return hidden_states + _run_lstm(self.lstm, self.norm(hidden_states), frame_lengths)


class MambaOCRResidualLSTMEncoder(nn.Module):
    """BiLSTM layers in the Mamba encoder's structure (pre-norm residual blocks, a final norm), so that the two
    sequence models differ only in the mixer. CRNN's plain stack (`bilstm`) trained from scratch stays on CTC's
    blank-only plateau for thousands of steps; this one leaves it as early as the Mamba blocks do."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.layers = nn.ModuleList(MambaOCRLSTMBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        all_hidden = (hidden_states,) if output_hidden_states else ()
        for layer in self.layers:
            hidden_states = layer(hidden_states, frame_lengths)
            if output_hidden_states:
                all_hidden += (hidden_states,)
        return self.norm_f(hidden_states), all_hidden


class MambaOCRTransformerEncoder(nn.Module):
    """Pre-norm transformer encoder with sinusoidal positions and a key-padding mask (for ablations)."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        layer = nn.TransformerEncoderLayer(
            config.hidden_size,
            config.num_attention_heads,
            dim_feedforward=4 * config.hidden_size,
            dropout=config.hidden_dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config.num_hidden_layers, enable_nested_tensor=False)
        self.norm_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        seq_len = hidden_states.shape[1]
        position = torch.arange(seq_len, device=hidden_states.device, dtype=torch.float32)[:, None]
        div = torch.exp(
            torch.arange(0, self.hidden_size, 2, device=hidden_states.device, dtype=torch.float32)
            * (-math.log(10000.0) / self.hidden_size)
        )
        positions = torch.zeros(seq_len, self.hidden_size, device=hidden_states.device)
        positions[:, 0::2] = torch.sin(position * div)
        positions[:, 1::2] = torch.cos(position * div[: self.hidden_size // 2])
        padding = torch.arange(seq_len, device=hidden_states.device)[None, :] >= frame_lengths[:, None]
        inputs = hidden_states + positions.to(hidden_states.dtype)
        output = self.layers(inputs, src_key_padding_mask=padding)
        return self.norm_f(output), ((inputs, output) if output_hidden_states else ())


class MambaOCRIdentityEncoder(nn.Module):
    """No sequence model: each frame is classified from its own backbone column (ablation)."""

    def __init__(self, config: MambaOCRConfig):
        super().__init__()

    def forward(
        self, hidden_states: torch.Tensor, frame_lengths: torch.LongTensor, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return hidden_states, ((hidden_states,) if output_hidden_states else ())


SEQUENCE_ENCODERS = {
    "mamba": MambaOCRMambaEncoder,
    "bilstm": MambaOCRLSTMEncoder,
    "bilstm_residual": MambaOCRResidualLSTMEncoder,
    "transformer": MambaOCRTransformerEncoder,
    "none": MambaOCRIdentityEncoder,
}


# Pretrained model and CTC head


class MambaOCRPreTrainedModel(PreTrainedModel):
    config_class = MambaOCRConfig
    config: MambaOCRConfig
    base_model_prefix = "mambaocr"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MambaOCRBlock", "MambaOCRLSTMBlock", "MambaOCRBackbone"]
    # the CTC loss takes no `num_items_in_batch`: Trainer divides it by the gradient-accumulation steps itself
    accepts_loss_kwargs = False
    # an adapter's base fingerprint is read by `load_adapter` / `check_adapter_base`, not loaded into a tensor
    _keys_to_ignore_on_load_unexpected = [rf"(^|\.){BASE_FINGERPRINT_KEY}$"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, MambaOCRMixer):
            module.init_mamba_weights()
        elif isinstance(module, nn.Conv2d) and getattr(module, "zero_init", False):
            init.zeros_(module.weight)  # adapter up-projection: identity at initialisation
            init.zeros_(module.bias)
        elif isinstance(module, MambaOCRRMSNorm):
            init.ones_(module.weight)
        else:
            super()._init_weights(module)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self._auto_class is not None:  # also map AutoModelForCTC to this class in the saved `auto_map`
            module = self.__class__.__module__.split(".")[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModelForCTC": f"{module}.{type(self).__name__}",
            }
        return super().save_pretrained(save_directory, *args, **kwargs)

    def load_adapter(self, peft_model_id: str | None = None, *args, adapter_state_dict: dict | None = None, **kwargs):
        """transformers' `load_adapter` (the route of `AutoModel.from_pretrained(adapter_dir)` and of
        `pipeline(model=adapter_dir)`), which also grows the CTC head of an adapter that extended the charset
        (`resize_vocab`) and warns when the adapter was trained on other base weights (`model_loading.read_adapter`).
        """
        hub_kwargs = {k: kwargs[k] for k in ("revision", "token") if kwargs.get(k) is not None}
        info, adapter_state_dict, trained_on = read_adapter(peft_model_id, adapter_state_dict, hub_kwargs)
        if info.get("base_vocab_size") == self.config.vocab_size < info.get("vocab_size", 0):
            self.resize_vocab(info["vocab_size"])  # the adapter's own head then replaces the new rows
            self.mambaocr_adapter_dir = peft_model_id  # the pipeline takes the adapter's processor from here
        output = super().load_adapter(peft_model_id, *args, adapter_state_dict=adapter_state_dict, **kwargs)
        if trained_on:
            where = f"at {peft_model_id}" if peft_model_id is not None else "being loaded"
            warn_if_other_base(self, trained_on, where, info.get("base_model"))
        return output

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        token = _LOADING_CHECKPOINT.set(True)
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        finally:
            _LOADING_CHECKPOINT.reset(token)
        if pretrained_model_name_or_path is not None:
            loaded = model[0] if isinstance(model, tuple) else model  # output_loading_info=True gives (model, info)
            # an adapter that extended the charset brings its own tokenizer (see `load_adapter`)
            source = getattr(loaded, "mambaocr_adapter_dir", None) or pretrained_model_name_or_path
            check_vocab_matches_head(loaded.config, source, kwargs)
        return model


class MambaOCRForCTC(MambaOCRFreezingMixin, MambaOCRBf16InferenceMixin, MambaOCRPreTrainedModel):
    r"""
    MambaOCR scene-text recognizer: `pixel_values` → patched ResNet (+ adapters) → projection → sequence encoder →
    CTC classifier. Decode its `logits` with `MambaOCRProcessor.batch_decode`. Freezing (`apply_freeze_strategy`,
    `parameter_groups`) comes from [`~freezing.MambaOCRFreezingMixin`], `forward_bf16` from
    [`~bf16_inference.MambaOCRBf16InferenceMixin`].

    Args:
        config ([`MambaOCRConfig`]):
            Model configuration. Initializing with a config file does not load the weights, only the configuration;
            see [`~PreTrainedModel.from_pretrained`] to load them.

    Example:

    ```python
    >>> import torch
    >>> from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC

    >>> model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet18", hidden_size=64)).eval()
    >>> out = model(torch.zeros(1, 3, 32, 128))
    >>> out.logits.shape, out.frame_lengths.tolist()
    (torch.Size([1, 32, 37]), [32])
    ```
    """

    def __init__(self, config: MambaOCRConfig):
        config._validate()  # a field set on the config after it was built is checked too
        super().__init__(config)
        self.backbone = MambaOCRBackbone(config)
        if config.use_pretrained_backbone and not _LOADING_CHECKPOINT.get():
            self.backbone.load_pretrained_weights()
        # timm initialised (or loaded) the ResNet: keep transformers' generic init away from it
        for module in self.backbone.body.modules():
            module._is_hf_initialized = True
        self.projection = nn.Linear(self.backbone.num_features, config.hidden_size)
        self.encoder = SEQUENCE_ENCODERS[config.sequence_model](config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.vocab_size)
        self.register_load_state_dict_pre_hook(check_head_rows)
        self.register_load_state_dict_pre_hook(check_adapter_base)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MambaOCRCTCOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, 32, width)`):
            Normalised images, padded on the right to the batch's widest (see [`MambaOCRImageProcessor`]).
        pixel_mask (`torch.LongTensor` of shape `(batch_size, width)` or `(batch_size, height, width)`, *optional*):
            1 for the columns of the real image, 0 for padding. Without it every column counts as valid.
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
            Character ids, padded with -100. Ids must be in `[0, vocab_size)` and differ from the blank.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if "attention_mask" in kwargs:
            raise TypeError(
                "MambaOCRForCTC takes `pixel_mask` ([batch, width], 1 on image columns), not `attention_mask`; the "
                "image processor returns it."
            )
        check_pixel_values(pixel_values, self.config)
        valid_pixels = valid_pixels_from_mask(pixel_values, pixel_mask)
        frame_lengths = frame_lengths_from_pixels(valid_pixels, self.config.frame_stride)

        features = self.backbone(pixel_values, valid_pixels)  # [batch, frames, num_features]
        frame_lengths = frame_lengths.clamp(max=features.shape[1])
        hidden_states = self.projection(features)  # [batch, frames, hidden]
        hidden_states, all_hidden = self.encoder(hidden_states, frame_lengths, bool(output_hidden_states))
        logits = self._classify(self.dropout(hidden_states))  # [batch, frames, vocab]; float32 under autocast
        logits = self._mask_padding_frames(logits, frame_lengths)

        loss = None
        if labels is not None:
            loss = self.ctc_loss(logits, frame_lengths, labels)

        if not return_dict:
            output = (logits, frame_lengths) + ((all_hidden,) if output_hidden_states else ())
            return ((loss,) + output) if loss is not None else output
        return MambaOCRCTCOutput(
            loss=loss,
            logits=logits,
            frame_lengths=frame_lengths,
            hidden_states=all_hidden if output_hidden_states else None,
        )

    def _mask_padding_frames(self, logits: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
        """Padded frames become certain blanks, so plain greedy decoding of a mixed batch emits nothing for them."""
        padding = torch.arange(logits.shape[1], device=logits.device)[None, :] >= frame_lengths[:, None]
        blank_row = torch.full((logits.shape[-1],), -1e4, dtype=logits.dtype, device=logits.device)
        blank_row[self.config.blank_id] = 0.0
        return torch.where(padding[..., None], blank_row, logits)

    def ctc_loss(self, logits: torch.Tensor, frame_lengths: torch.LongTensor, labels: torch.Tensor) -> torch.Tensor:
        """CTC loss in float32 with per-image input lengths; `labels` padded with -100."""
        return compute_ctc_loss(logits, frame_lengths, labels, self.config)

    def get_input_embeddings(self) -> None:
        """`None`: an image model has no token embeddings (PEFT then saves an adapter whose charset grew, and
        `enable_input_require_grads` skips the model)."""
        return None

    def get_output_embeddings(self) -> None:
        """The CTC head is `classifier`, not tied to any input embedding (see `get_input_embeddings`)."""
        return None

    @torch.no_grad()
    def resize_vocab(self, new_vocab_size: int, margin: float = 2.0) -> None:
        """Grow or shrink the CTC head to `new_vocab_size` classes, keeping the existing rows
        (`peft_utils.extend_charset` calls it after characters were added to the tokenizer).

        Args:
            new_vocab_size (`int`):
                Number of classes, blank included.
            margin (`float`, *optional*, defaults to 2.0):
                Each new row is the mean of the old rows with its bias `margin` lower, so greedy decoding is unchanged
                until training moves it. Deterministic: a base resized again matches the head an adapter was trained
                from.
        """
        old = self.classifier
        if new_vocab_size <= self.config.blank_id:
            raise ValueError(f"`new_vocab_size` must exceed the blank id {self.config.blank_id}.")
        new = nn.utils.skip_init(
            nn.Linear, old.in_features, new_vocab_size, device=old.weight.device, dtype=old.weight.dtype
        )
        keep = min(old.out_features, new_vocab_size)
        new.weight[:keep] = old.weight[:keep]
        new.bias[:keep] = old.bias[:keep]
        new.weight[keep:] = old.weight.mean(dim=0)
        new.bias[keep:] = old.bias.mean() - margin
        self.classifier = new
        self.config.vocab_size = new_vocab_size


__all__ = ["MambaOCRForCTC", "MambaOCRPreTrainedModel", "MambaOCRCTCOutput"]
