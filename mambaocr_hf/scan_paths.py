# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The paths the bidirectional Mamba mixer runs on, and `select_scan`, the one place that picks a path.

`MambaOCRMixer.forward` is the same on every path: `in_proj` → `conv` (depthwise causal convolution + SiLU, per
direction) → `scan` (selective scan with the `D` skip, gated by `silu(gate)` as mamba-ssm's `selective_scan_fn` does,
the directions averaged) → `out_proj`. A path says how those steps run:

* `"compiled"` (`CPUKernelPath`): the C kernels of `cpu_kernels.py`. Both directions in natural frame order, the
  reverse one reading each sequence backwards within its length (no reversed copies); Δ's projection, softplus, the
  gate and the average of the directions inside the scan kernel; `in_proj` / `out_proj` through oneDNN.
* `"chunked"`, `"reference"`, `"export"` (`TorchPath`): the directions stacked in the batch (the reverse one as
  sequences reversed within their length), one batched call per step, the scans of `selective_scan.py`.
* `"fused"` (`FusedCUDAPath`): as the PyTorch path, with mamba-ssm's CUDA kernel for each direction's scan.

A layer that PEFT wraps (LoRA on `x_proj` / `dt_proj`, a `modules_to_save` copy) runs its own forward, so that what
it adds counts. The C convolution reads `conv1d`'s weights directly: a mixer whose `conv1d` is wrapped runs the
chunked path (`ScanPath.for_mixer`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import logging

from .cpu_kernels import MAX_RANK, MAX_STATE, bidirectional_conv, bidirectional_scan, kernels_available
from .onednn import dense
from .selective_scan import (
    causal_depthwise_conv1d,
    fused_kernels_available,
    is_exporting,
    is_tracing,
    selective_scan_chunked,
    selective_scan_export,
    selective_scan_fused,
    selective_scan_reference,
)

logger = logging.get_logger(__name__)

# The PyTorch scans by path name, looked up at each call.
SCANS = {
    "chunked": selective_scan_chunked,
    "reference": selective_scan_reference,
    "export": selective_scan_export,
}


def reversed_positions(frame_lengths: torch.LongTensor, seq_len: int) -> torch.LongTensor:
    """`[batch, seq_len]` source positions that reverse each sequence within its own length, leaving the padding at
    the end (so a causal scan over the result starts at the last valid frame). The mapping is its own inverse."""
    positions = torch.arange(seq_len, device=frame_lengths.device)[None, :]  # [1, seq_len]
    lengths = frame_lengths[:, None]  # [batch, 1]
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def bidirectional_rows(frame_lengths: torch.LongTensor, seq_len: int) -> torch.LongTensor:
    """Row indices into `[batch * seq_len]`: the batch as it is, then each sequence reversed within its own length."""
    offsets = torch.arange(frame_lengths.shape[0], device=frame_lengths.device)[:, None] * seq_len  # [batch, 1]
    forward = torch.arange(seq_len, device=frame_lengths.device)[None, :] + offsets
    return torch.cat([forward.flatten(), (reversed_positions(frame_lengths, seq_len) + offsets).flatten()])


def _stack_directions(values: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
    """`[batch, seq_len, channels]` → `[2 * batch, seq_len, channels]`: the sequences, then each reversed within its
    own length."""
    batch, seq_len, _ = values.shape
    rows = bidirectional_rows(frame_lengths, seq_len)  # [2 * batch * seq_len]
    return values.reshape(batch * seq_len, -1).index_select(0, rows).view(2 * batch, seq_len, -1)


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight of a linear layer, also when PEFT wraps it (LoRA keeps the original as `base_layer`)."""
    return module.weight if hasattr(module, "weight") else module.base_layer.weight


class ScanPath:
    """How a mixer's steps run on one path (see the module docstring); stateless, one instance per path."""

    name: str

    def for_mixer(self, mixer: nn.Module) -> ScanPath:
        """The path for `mixer` (this one unless the mixer's layers need another)."""
        return self

    def linear(self, module: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """`in_proj` / `out_proj`."""
        return module(hidden_states)

    def conv(self, mixer: nn.Module, x: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
        """The depthwise causal convolution + SiLU of each direction of `x` `[batch, seq_len, intermediate]`, in
        this path's layout."""
        raise NotImplementedError

    def scan(
        self, mixer: nn.Module, u: torch.Tensor, gate: torch.Tensor, frame_lengths: torch.LongTensor
    ) -> torch.Tensor:
        """`mean over directions of (selective_scan(u) + D·u) ⊙ silu(gate)`, `[batch, seq_len, intermediate]`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"ScanPath({self.name!r})"


class TorchPath(ScanPath):
    """The PyTorch path: both directions as one stacked batch `[directions * batch, ...]` through the convolution,
    the projections and the scan, so that each step costs one call, not two."""

    def __init__(self, name: str):
        self.name = name

    def conv(self, mixer: nn.Module, x: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
        batch, seq_len, _ = x.shape
        if mixer.bidirectional:
            x = _stack_directions(x, frame_lengths)  # [2 * batch, seq_len, intermediate]
        convs = mixer.directional("conv1d")
        if all(type(conv) is nn.Conv1d for conv in convs):  # each direction with its own kernel, in one call
            weight = torch.cat([conv.weight[None].expand(batch, -1, -1, -1) for conv in convs]).flatten(0, 1)
            bias = None if convs[0].bias is None else torch.cat([conv.bias[None].expand(batch, -1) for conv in convs])
            return causal_depthwise_conv1d(x, weight, None if bias is None else bias.flatten())
        # a PEFT-wrapped conv1d runs its own forward; nn.Conv1d pads both ends by kernel - 1, so its first seq_len
        # outputs are the causal ones
        per_direction = x.unflatten(0, (len(convs), batch))
        return torch.cat(
            [
                F.silu(conv(part.transpose(1, 2))[..., :seq_len]).transpose(1, 2)
                for conv, part in zip(convs, per_direction)
            ]
        )

    def scan(
        self, mixer: nn.Module, u: torch.Tensor, gate: torch.Tensor, frame_lengths: torch.LongTensor
    ) -> torch.Tensor:
        batch, seq_len, _ = gate.shape
        z = _stack_directions(gate, frame_lengths) if mixer.bidirectional else gate
        delta, B, C, delta_bias = self._project(mixer, u, batch)
        A = [-torch.exp(a.float()) for a in mixer.directional("A_log")]
        y = self._scan(u, delta, A, B, C, mixer.directional("D"), z, delta_bias, batch)
        if mixer.bidirectional:  # back to forward order, then average the directions
            rows = bidirectional_rows(frame_lengths, seq_len)[batch * seq_len :]
            y_reverse = y[batch:].reshape(batch * seq_len, -1).index_select(0, rows)
            y = (y[:batch] + y_reverse.view(batch, seq_len, -1)) * 0.5
        return y

    @staticmethod
    def _project(mixer: nn.Module, u: torch.Tensor, batch: int) -> tuple:
        """Δ before its bias `[directions * batch, seq_len, intermediate]`, B and C `[directions * batch, seq_len,
        state]`, and each direction's Δ bias: x_proj and dt_proj of both directions as one batched matmul each."""
        x_projs, dt_projs = mixer.directional("x_proj"), mixer.directional("dt_proj")
        per_direction = u.unflatten(0, (len(x_projs), batch))
        if all(type(proj) is nn.Linear for proj in x_projs):
            x_proj = torch.stack([w.weight for w in x_projs]).transpose(1, 2)  # [dirs, inter, r+2n]
            projected = torch.matmul(per_direction, x_proj[:, None])  # [dirs, batch, seq, r+2n]
        else:
            projected = torch.stack([proj(part) for proj, part in zip(x_projs, per_direction)])
        state = mixer.ssm_state_size
        dt_low_rank, B, C = torch.split(projected, [mixer.time_step_rank, state, state], -1)
        if all(type(proj) is nn.Linear for proj in dt_projs):
            dt_proj = torch.stack([w.weight for w in dt_projs]).transpose(1, 2)  # [dirs, r, inter]
            delta = torch.matmul(dt_low_rank, dt_proj[:, None]).flatten(0, 1)  # the scan adds the bias
            delta_bias = [proj.bias for proj in dt_projs]
        else:  # the module adds its bias itself, so the scan adds none
            delta = torch.stack([proj(part) for proj, part in zip(dt_projs, dt_low_rank)]).flatten(0, 1)
            delta_bias = [delta.new_zeros(mixer.intermediate_size) for _ in dt_projs]
        return delta, B.flatten(0, 1), C.flatten(0, 1), delta_bias

    def _scan(self, u, delta, A: list, B, C, D: list, z, delta_bias: list, batch: int) -> torch.Tensor:
        scan = SCANS[self.name]
        if len(A) == 1:
            return scan(u, delta, A[0], B, C, D[0], z, delta_bias[0])
        # a per-sample A, D and Δ bias: each direction's for its half of the stacked batch
        A, D, delta_bias = [
            torch.cat([v[None].expand(batch, *v.shape) for v in values]) for values in (A, D, delta_bias)
        ]
        return scan(u, delta, A, B, C, D, z, delta_bias)


class FusedCUDAPath(TorchPath):
    """The PyTorch path with mamba-ssm's fused CUDA scan, one kernel call per direction."""

    def __init__(self):
        super().__init__("fused")

    def _scan(self, u, delta, A, B, C, D, z, delta_bias, batch):  # pragma: no cover - needs CUDA and mamba-ssm
        halves = [slice(i * batch, (i + 1) * batch) for i in range(len(A))]
        return torch.cat(
            [
                selective_scan_fused(u[h], delta[h], A[i], B[h], C[h], D[i], z[h], delta_bias[i])
                for i, h in enumerate(halves)
            ]
        )


class CPUKernelPath(ScanPath):
    """The compiled CPU kernels: the convolution and the scan of both directions in natural frame order."""

    name = "compiled"

    def for_mixer(self, mixer: nn.Module) -> ScanPath:
        # the C convolution reads conv1d's weights: a PEFT-wrapped conv1d (a `modules_to_save` copy) runs the chunked
        # path, where the wrapper's own forward runs
        plain = all(type(conv) is nn.Conv1d for conv in mixer.directional("conv1d"))
        return self if plain else PATHS["chunked"]

    def linear(self, module: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return dense(module, hidden_states)

    def conv(self, mixer: nn.Module, x: torch.Tensor, frame_lengths: torch.LongTensor) -> torch.Tensor:
        convs = mixer.directional("conv1d")
        weight = torch.stack([conv.weight.squeeze(1) for conv in convs])  # [dirs, inter, kernel]
        bias = None if convs[0].bias is None else torch.stack([conv.bias for conv in convs])
        return bidirectional_conv(x.float(), weight, bias, frame_lengths)  # [dirs, batch, seq_len, inter]

    def scan(
        self, mixer: nn.Module, u: torch.Tensor, gate: torch.Tensor, frame_lengths: torch.LongTensor
    ) -> torch.Tensor:
        # x_proj and dt_proj in Python when PEFT wraps them (LoRA), so that what the wrappers add counts
        projected = torch.stack(
            [dense(proj, part.to(_weight(proj).dtype)) for proj, part in zip(mixer.directional("x_proj"), u)]
        )
        dt_projs = mixer.directional("dt_proj")
        A = -torch.exp(torch.stack(mixer.directional("A_log")).float())
        D = torch.stack(mixer.directional("D"))
        if all(type(proj) is nn.Linear for proj in dt_projs):  # the kernel computes Δ from the low-rank input
            weight, bias, delta = (
                torch.stack([p.weight for p in dt_projs]),
                torch.stack([p.bias for p in dt_projs]),
                None,
            )
        else:  # each wrapped dt_proj computes its Δ, bias included
            delta = torch.stack([proj(part) for proj, part in zip(dt_projs, projected[..., : mixer.time_step_rank])])
            weight = delta.new_zeros(len(dt_projs), mixer.intermediate_size, mixer.time_step_rank)
            bias = delta.new_zeros(len(dt_projs), mixer.intermediate_size)
        return bidirectional_scan(u, projected, weight, A, D, gate.float(), bias, frame_lengths, delta)


PATHS: dict[str, ScanPath] = {
    "compiled": CPUKernelPath(),
    "fused": FusedCUDAPath(),
    **{name: TorchPath(name) for name in SCANS},
}


def select_scan(config, device: torch.device) -> ScanPath:
    """The path a model of `config` runs its mixers on, on `device`, for this call (the encoder resolves it once per
    forward): `config.scan_implementation`, where `"auto"` takes the fused CUDA kernel on CUDA where mamba-ssm is
    installed, else the C kernels on CPU where they build, else the chunked scan. While `torch.export` traces, the
    export scan (every other path loops in Python or calls a custom kernel, so the export would bake in the
    example's length). `"compiled"` runs the chunked scan where the C kernels do not apply (another device, tracing,
    no compiler, a state or Δ rank larger than their buffers)."""
    choice = config.scan_implementation
    if is_exporting():
        choice = "export"
    elif choice == "auto":
        if fused_kernels_available() and device.type == "cuda":
            choice = "fused"
        elif device.type == "cpu" and not is_tracing() and kernels_available():
            choice = "compiled"
        else:
            choice = "chunked"
    if choice == "compiled" and not (
        device.type == "cpu"
        and not is_tracing()
        and config.state_size <= MAX_STATE
        and config.time_step_rank <= MAX_RANK
        and kernels_available()
    ):
        choice = "chunked"
    _log_scan_path(choice)
    return PATHS[choice]


_logged_scan_path = {"path": ""}


def _log_scan_path(path: str) -> None:
    if path != _logged_scan_path["path"]:
        _logged_scan_path["path"] = path
        logger.info(f"MambaOCR selective scan: {path}.")
        if path != "fused" and torch.cuda.is_available() and not fused_kernels_available():
            logger.warning_once(
                "CUDA is available but `mamba-ssm` is not installed: using the pure-PyTorch scan. Install the fused "
                "kernels with `pip install mambaocr-hf[cuda]` for speed."
            )


__all__ = ["PATHS", "SCANS", "ScanPath", "bidirectional_rows", "reversed_positions", "select_scan"]
