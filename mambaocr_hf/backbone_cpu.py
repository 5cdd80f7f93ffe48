# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The backbone's inference engine on CPU: the stride-patched timm ResNet with every BatchNorm folded into its
convolution and the bias, residual add and ReLU computed inside oneDNN's convolution (`onednn.py`), so each
activation is written once instead of four times, with weights packed for the input shapes that repeat.

`MambaOCRBackbone` makes one call per forward, `FusedCPUInference(body, adapters, pixel_values, valid_pixels)`,
which returns the features or `None` where the engine does not apply (training, autograd, tracing and export, other
devices and dtypes, a block that is not a plain timm ResNet block); the backbone then runs its modules. The width
masks of padded batches are applied here as the backbone's hooks apply them (`mask_columns`).
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from .onednn import cpu_supports_bf16, fold_batch_norm, fused_conv, fused_conv_available, pack_conv_weight
from .selective_scan import is_exporting, is_tracing

# The plan and its packed weights are shared by the threads running one model: they are read and changed under it.
_LOCK = threading.RLock()


def kernel_width(module: nn.Module) -> int:
    """How many columns a conv / pool reads per output column (1 for layers that never mix columns)."""
    kernel = getattr(module, "kernel_size", 1)
    return kernel[-1] if isinstance(kernel, tuple) else kernel


def mask_columns(hidden_states: torch.Tensor, valid_pixels: torch.Tensor, input_width: int) -> torch.Tensor:
    """`hidden_states` `[batch, channels, height, width]` with the columns past each image's true width zeroed."""
    width = hidden_states.shape[-1]
    # columns at this resolution = ceil(valid input columns * width / input width)
    valid = torch.div(valid_pixels * width + input_width - 1, input_width, rounding_mode="floor")
    mask = torch.arange(width, device=hidden_states.device)[None, :] < valid[:, None]  # [batch, width]
    return hidden_states * mask[:, None, None, :].to(hidden_states.dtype)


class FusedCPUInference:
    """The folded, fused ResNet for inference on CPU, with the folded and packed weights it keeps between calls.

    The folded weights are kept (in the compute dtype, so bf16 autocast does not re-cast every weight on every call)
    until a backbone weight, statistic or hook changes. Copies and pickles leave them behind (oneDNN's packed tensors
    cannot be copied); the copy builds its own on first use.

    Args:
        padding_hook: the backbone's padding-mask forward pre-hook: modules carrying only this hook are plain (the
            engine applies the masks itself); any other hook makes the engine step aside, so that it runs.
    """

    packed_shapes = 2  # input shapes oneDNN-packed weights are kept for (a copy each)

    def __init__(self, padding_hook=None):
        self.padding_hook = padding_hook
        self.cache: dict | None = None  # {"key", "plan", "uses"}, built on first use

    def __getstate__(self) -> dict:
        return {**self.__dict__, "cache": None}

    def reset(self) -> None:
        """Drop the folded weights (they go stale, and would only take memory, while the model trains)."""
        self.cache = None

    def __call__(
        self, body: nn.Module, adapters: nn.ModuleDict, pixel_values: torch.Tensor, valid_pixels: torch.Tensor | None
    ) -> torch.Tensor | None:
        """`body`'s output `[batch, channels, height, width]` (channels-last) for `pixel_values`, the bottleneck
        `adapters` applied after their blocks and the columns past each image's `valid_pixels` (`[batch]`, `None`
        if nothing is padded) masked; `None` where the engine does not apply."""
        dtype = self.dtype_for(body, pixel_values)
        return None if dtype is None else self._run(body, adapters, pixel_values, dtype, valid_pixels)

    @staticmethod
    def dtype_for(body: nn.Module, pixel_values: torch.Tensor) -> torch.dtype | None:
        """The dtype the fused path would run `body` in for `pixel_values`, or `None` where it does not apply."""
        if (
            body.training
            or torch.is_grad_enabled()
            or pixel_values.device.type != "cpu"
            or is_tracing()
            or is_exporting()
            or not fused_conv_available()
        ):
            return None
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
        else:
            dtype = body.bn1.weight.dtype
        if dtype == torch.bfloat16 and not cpu_supports_bf16():
            return None  # oneDNN's bf16 convolutions need AVX-512 BF16 / AMX; the modules run (emulated) elsewhere
        return dtype if dtype in (torch.float32, torch.bfloat16) else None

    def _build_plan(self, body: nn.Module, adapters: nn.ModuleDict, dtype: torch.dtype) -> dict | None:
        """The ResNet as lists of steps for [`_run`]: `("conv", conv, weight, bias, relu, packed)` with the
        following BatchNorm folded in (in `dtype`; `packed` maps an input shape to the weight in oneDNN's layout for
        it), or `("module", pool)`. `None` if some part is not a plain timm ResNet
        (PEFT-wrapped convolutions, squeeze-excitation, drop paths, hooks a user registered...)."""

        def plain(module: nn.Module) -> bool:
            return not module._forward_hooks and all(
                hook is self.padding_hook for hook in module._forward_pre_hooks.values()
            )

        def steps(modules: list[nn.Module | None], dtype: torch.dtype = dtype) -> list[tuple] | None:
            modules = [m for m in modules if m is not None and type(m) is not nn.Identity]
            if not all(plain(m) for m in modules):
                return None
            out, index = [], 0
            while index < len(modules):
                module = modules[index]
                if type(module) in (nn.MaxPool2d, nn.AvgPool2d):
                    out.append(("module", module))
                    index += 1
                    continue
                norm = modules[index + 1] if index + 1 < len(modules) else None
                if type(module) is not nn.Conv2d or type(norm) is not nn.BatchNorm2d or norm.training:
                    return None
                relu = index + 2 < len(modules) and type(modules[index + 2]) is nn.ReLU
                out.append(("conv", module, *fold_batch_norm(module, norm, dtype), relu, {}))
                index += 3 if relu else 2
            return out

        def children(module: nn.Module | None) -> list[nn.Module | None]:
            return list(module.children()) if type(module) is nn.Sequential else [module]

        # the stem reads the raw pixels, whose rounding to bf16 alone changed ~1 in 250 reads of the demo
        # checkpoint; in float32 it costs ~2% of the bf16 model's time
        stem_dtype = torch.float32
        stem = steps([*children(body.conv1), body.bn1, body.act1], stem_dtype)
        pool = steps([body.maxpool])  # after the cast: rounding commutes with max, and bf16 halves its traffic
        if stem is None or pool is None:
            return None
        blocks = []
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            stage_adapters = adapters[stage] if stage in adapters else None
            for index, block in enumerate(getattr(body, stage)):
                if hasattr(block, "conv3"):  # timm's Bottleneck
                    names, final_act = ("conv1", "bn1", "act1", "conv2", "bn2", "drop_block", "act2", "aa", "conv3", "bn3"), "act3"  # fmt: skip
                else:  # timm's BasicBlock
                    names, final_act = ("conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2"), "act2"
                branch = steps([getattr(block, name, None) for name in names])
                shortcut = [] if block.downsample is None else steps(children(block.downsample))
                if (
                    branch is None
                    or shortcut is None
                    or branch[-1][0] != "conv"
                    or branch[-1][-1]  # a ReLU before the residual add: not a ResNet block
                    or not plain(block)
                    or type(getattr(block, final_act, None)) is not nn.ReLU
                    or any(type(getattr(block, name, None)) not in (type(None), nn.Identity) for name in ("se", "drop_path"))
                ):  # fmt: skip
                    return None
                blocks.append((branch, shortcut, stage_adapters[index] if stage_adapters is not None else None))
        return {"stem": stem, "stem_dtype": stem_dtype, "pool": pool, "blocks": blocks}

    @staticmethod
    def _key(body: nn.Module, dtype: torch.dtype) -> tuple:
        """Changes whenever a backbone weight or statistic changes (in place, or by replacing the tensor) and whenever
        a hook is added or removed (~0.1 ms for a ResNet34)."""
        key = [dtype]
        for module in body.modules():
            key.append(len(module._forward_hooks) + len(module._forward_pre_hooks))
            for tensor in (*module._parameters.values(), *module._buffers.values()):
                if tensor is not None:
                    key += (tensor.data_ptr(), tensor._version)
        return tuple(key)

    def _run(
        self,
        body: nn.Module,
        adapters: nn.ModuleDict,
        pixel_values: torch.Tensor,
        dtype: torch.dtype,
        valid_pixels: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The fused ResNet (see `__call__`); `None` where a block is not plain.

        oneDNN runs fastest with weights reordered for one input shape, and 2-3.5x slower than with plain weights on
        inputs of any other shape (measured on AVX2), while reordering them all costs about as much as one batch of
        32. So the weights are packed for an input shape once it comes a second time, for the last
        `packed_shapes` such shapes; other shapes run with the plain folded weights."""
        input_width = pixel_values.shape[-1]
        key = self._key(body, dtype)
        shape = tuple(pixel_values.shape)
        # a call keeps the tensors it took even if another thread's call drops them from the cache
        with _LOCK:
            cache = self.cache
            if cache is None or cache["key"] != key:  # also remembers "cannot fuse" for this key
                cache = self.cache = {"key": key, "plan": self._build_plan(body, adapters, dtype), "uses": {}}
            plan, uses = cache["plan"], cache["uses"]
            if plan is None:
                return None
            uses[shape] = uses.pop(shape, 0) + 1  # the most recent shape last
            if len(uses) > 64:
                del uses[next(iter(uses))]
            pack = uses[shape] > 1
            packed_shapes = [seen for seen, count in uses.items() if count > 1][-self.packed_shapes :]

        def packed_weight(weight: torch.Tensor, module: nn.Module, packed: dict, input_shape: torch.Size):
            with _LOCK:
                if shape not in packed:
                    for stale in [seen for seen in packed if seen not in packed_shapes]:
                        del packed[stale]
                    packed[shape] = pack_conv_weight(weight, module, input_shape)
                return packed[shape]

        def run(hidden_states: torch.Tensor, steps: list, residual: torch.Tensor | None = None) -> torch.Tensor:
            for position, step in enumerate(steps):
                kind, module = step[0], step[1]
                if valid_pixels is not None and kernel_width(module) > 1:  # as the backbone's padding masks do
                    hidden_states = mask_columns(hidden_states, valid_pixels, input_width)
                if kind == "module":
                    hidden_states = module.forward(hidden_states)  # masked above: skip its padding-mask hook
                    continue
                weight, bias, relu, packed = step[2:]
                if pack:
                    weight = packed_weight(weight, module, packed, hidden_states.shape)
                if residual is not None and position == len(steps) - 1:  # the block's last convolution
                    hidden_states = fused_conv(hidden_states, weight, bias, module, relu=True, residual=residual)
                else:
                    hidden_states = fused_conv(hidden_states, weight, bias, module, relu=relu)
            return hidden_states

        hidden_states = pixel_values.to(plan["stem_dtype"]).contiguous(memory_format=torch.channels_last)
        hidden_states = run(hidden_states, plan["stem"])
        hidden_states = run(hidden_states.to(dtype), plan["pool"])
        for branch, shortcut, adapter in plan["blocks"]:
            hidden_states = run(hidden_states, branch, residual=run(hidden_states, shortcut))
            if adapter is not None:
                hidden_states = adapter(hidden_states)
        return hidden_states


__all__ = ["FusedCPUInference", "kernel_width", "mask_columns"]
