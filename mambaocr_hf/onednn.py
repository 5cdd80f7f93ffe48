# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""oneDNN (the library behind PyTorch's CPU convolutions) called directly, for CPU inference: linear layers through
oneDNN instead of MKL's sgemm, and convolutions with a folded BatchNorm, the bias, a residual add and the ReLU in one
primitive, with weights packed once for an input shape. Each op is probed once and used only where this torch build
computes it right; elsewhere callers get the plain PyTorch op."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

from .selective_scan import is_exporting


@functools.cache
def _onednn_linear_works() -> bool:
    """Whether this torch build has oneDNN's linear op and it computes `F.linear` (probed once, on first use)."""
    try:
        # fixed values: the probe must not draw from the global random generator
        x, weight = torch.linspace(-1, 1, 24).view(3, 8), torch.linspace(-2, 1, 40).view(5, 8)
        bias = torch.linspace(0, 1, 5)
        with torch.autocast("cpu", enabled=False), torch.no_grad():
            out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
            return torch.allclose(out, F.linear(x, weight, bias), atol=1e-5)
    except (AttributeError, RuntimeError):  # a torch build without oneDNN, or without this op
        return False


def linear(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear`, with float32 inference on CPU run by oneDNN.

    PyTorch runs float32 `F.linear` through MKL's sgemm, which on AMD CPUs takes its AVX2 code path: measured on this
    project's benchmark machine (AMD EPYC, 2 threads), a `[4096, 256] x [256, 512]` product takes 5.5 ms that way and
    2.5 ms with oneDNN (the library PyTorch's convolutions and LSTM already use). Same float32 arithmetic, another
    kernel. Everything else (autograd, autocast, other dtypes and devices, tracing) goes through `F.linear`.
    """
    if (
        hidden_states.device.type == "cpu"
        and hidden_states.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (hidden_states.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not is_exporting()
        and _onednn_linear_works()
    ):
        out = torch.ops.mkldnn._linear_pointwise(
            hidden_states.reshape(-1, hidden_states.shape[-1]), weight, bias, "none", [], ""
        )
        return out.view(*hidden_states.shape[:-1], out.shape[-1])
    return F.linear(hidden_states, weight, bias)


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX-512 BF16 or AMX); elsewhere bf16 autocast is
    emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def fused_conv_available() -> bool:
    """Whether [`fused_conv`] can run here: this torch build has oneDNN's fused convolution ops and they compute
    conv + add + ReLU (probed once, in float32 whatever autocast the first caller runs under)."""
    try:
        x = torch.linspace(-1, 1, 2 * 3 * 4 * 5).view(2, 3, 4, 5)
        weight, bias = torch.linspace(-1, 1, 4 * 3 * 9).view(4, 3, 3, 3), torch.linspace(-1, 1, 4)
        other = torch.linspace(1, -1, 2 * 4 * 4 * 5).view(2, 4, 4, 5)
        with torch.autocast("cpu", enabled=False), torch.no_grad():
            out = torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, weight, bias, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, "relu", [], ""
            )
            return torch.allclose(out, F.relu(F.conv2d(x, weight, bias, padding=1) + other), atol=1e-4)
    except (AttributeError, RuntimeError):  # a torch build without oneDNN, or without these ops
        return False


def fused_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    conv: nn.Conv2d,
    relu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """`relu?(conv(x) + bias + residual?)` as one oneDNN primitive (inference only): the convolution's output is
    written once, with the bias, the residual add and the ReLU applied in its epilogue. `weight`/`bias` replace
    `conv`'s own (e.g. with a BatchNorm folded in); `conv` gives the geometry."""
    padding, stride, dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
    ops = torch.ops.mkldnn
    if residual is not None:
        return ops._convolution_pointwise.binary(
            x, residual, weight, bias, padding, stride, dilation, conv.groups, "add", 1.0, "relu" if relu else None,
            [], "",
        )  # fmt: skip
    return ops._convolution_pointwise(
        x, weight, bias, padding, stride, dilation, conv.groups, "relu" if relu else "none", [], ""
    )


def pack_conv_weight(weight: torch.Tensor, conv: nn.Conv2d, input_shape: torch.Size) -> torch.Tensor:
    """`weight` reordered once into oneDNN's blocked layout for inputs of `input_shape`. Otherwise oneDNN reorders it
    on every call: ~23% of a 512-channel bf16 convolution's time at batch 32 × 32 frames on AVX-512. Inputs of other
    shapes still work but run slower than with the plain weight (oneDNN picks another layout for them and reorders
    the packed one). The plain `weight` where this torch build cannot pack."""
    try:
        return torch.ops.mkldnn._reorder_convolution_weight(
            weight, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, list(input_shape)
        )
    except (AttributeError, RuntimeError):
        return weight


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """`conv` followed by `norm` in eval mode, as one convolution's weight (channels-last) and bias, in `dtype`.
    Folded in float32, rounded to `dtype` once."""
    scale = norm.weight.float() * torch.rsqrt(norm.running_var.float() + norm.eps)
    bias = norm.bias.float() - norm.running_mean.float() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.float() * scale
    weight = conv.weight.float() * scale[:, None, None, None]
    return weight.contiguous(memory_format=torch.channels_last).to(dtype), bias.to(dtype)


def dense(module: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """`module(hidden_states)`; a plain `nn.Linear` through [`linear`] (a PEFT-wrapped one runs its own forward)."""
    if type(module) is nn.Linear:
        return linear(hidden_states, module.weight, module.bias)
    return module(hidden_states)


__all__ = [
    "cpu_supports_bf16",
    "dense",
    "fold_batch_norm",
    "fused_conv",
    "fused_conv_available",
    "linear",
    "pack_conv_weight",
]
