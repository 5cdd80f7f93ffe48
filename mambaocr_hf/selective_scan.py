# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Selective scan (Mamba-1 recurrence) in pure PyTorch, with the fused `mamba-ssm` kernels used when available.

The recurrence, per channel `d` and state `n`, with discretisation as in Mamba (zero-order hold for A, Euler for B):

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · B_t · u_t        y_t = C_t · h_t

`D·u` and the gate are applied by the caller. Tensors are sequence-major here (`[batch, seq_len, channels]`), the
layout of the model's hidden states, so no transposes are needed around the scan.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

try:  # optional CUDA kernels (`pip install mambaocr-hf[cuda]`)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan_fn
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_selective_scan_fn = None

try:  # pragma: no cover - depends on the machine
    from causal_conv1d import causal_conv1d_fn as _cuda_causal_conv1d_fn
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_causal_conv1d_fn = None


def fused_kernels_available() -> bool:
    """Whether the fused `mamba-ssm` selective-scan kernel can be imported (it needs CUDA)."""
    return _cuda_selective_scan_fn is not None


def causal_depthwise_conv1d(
    hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Depthwise causal convolution over the sequence followed by SiLU.

    Args:
        hidden_states: `[batch, seq_len, channels]`.
        weight: `[channels, 1, kernel]` (the layout of `nn.Conv1d(groups=channels)`).
        bias: `[channels]` or `None`.

    Returns:
        `[batch, seq_len, channels]`; frame `t` only sees frames `<= t`.
    """
    seq_len = hidden_states.shape[1]
    x = hidden_states.transpose(1, 2)  # [batch, channels, seq_len]
    if _cuda_causal_conv1d_fn is not None and x.is_cuda:
        return _cuda_causal_conv1d_fn(x.contiguous(), weight.squeeze(1), bias, activation="silu").transpose(1, 2)
    kernel = weight.shape[-1]
    x = F.conv1d(F.pad(x, (kernel - 1, 0)), weight, bias, groups=weight.shape[0])  # [batch, channels, seq_len]
    return F.silu(x[..., :seq_len]).transpose(1, 2)


def _check_scan_shapes(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    batch, seq_len, channels = u.shape
    state = A.shape[-1]
    if dt.shape != u.shape or B.shape != (batch, seq_len, state) or C.shape != (batch, seq_len, state):
        raise ValueError(
            f"selective scan got inconsistent shapes: u {tuple(u.shape)}, dt {tuple(dt.shape)}, A {tuple(A.shape)}, "
            f"B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    if A.shape[-2] != channels or A.dim() not in (2, 3):
        raise ValueError(f"A must be [channels, state] or [batch, channels, state], got {tuple(A.shape)}")


def selective_scan_reference(
    u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """The recurrence written out one time step at a time, in float32: the oracle the fast paths are tested against.

    Args:
        u: input `[batch, seq_len, channels]`.
        dt: positive step sizes Δ (softplus already applied) `[batch, seq_len, channels]`.
        A: negative real diagonal state matrix `[channels, state]`, or `[batch, channels, state]` when the batch
            stacks several mixers (e.g. both directions of a bidirectional layer).
        B, C: input-dependent projections `[batch, seq_len, state]`.

    Returns:
        `y` `[batch, seq_len, channels]` in float32.
    """
    _check_scan_shapes(u, dt, A, B, C)
    u, dt, A, B, C = (t.float() for t in (u, dt, A, B, C))
    batch, seq_len, channels = u.shape
    A = A.expand(batch, channels, A.shape[-1])
    h = u.new_zeros(batch, channels, A.shape[-1])  # [batch, channels, state]
    ys = []
    for t in range(seq_len):
        dA = torch.exp(dt[:, t, :, None] * A)  # [batch, channels, state]
        dBu = dt[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]
        h = dA * h + dBu
        ys.append((h * C[:, t, None, :]).sum(-1))  # [batch, channels]
    return torch.stack(ys, dim=1)


def selective_scan_chunked(
    u: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Fast pure-PyTorch selective scan with memory linear in the sequence length.

    The discretised terms `exp(Δ·A)` and `Δ·B·u` are computed for a whole chunk of `chunk_size` frames in one
    vectorised op each (`[batch, chunk, channels, state]`, never the whole `[batch, seq_len, channels, state]`), so
    the per-step work left in the loop is a single fused multiply-add on the state, and the read-out `C·h` of the
    chunk is one batched matmul. Numerically it is the same recurrence as `selective_scan_reference`.

    Arguments and return value as in [`selective_scan_reference`].
    """
    _check_scan_shapes(u, dt, A, B, C)
    u, dt, A, B, C = (t.float() for t in (u, dt, A, B, C))
    batch, seq_len, channels = u.shape
    state = A.shape[-1]
    A = A.expand(batch, channels, state)[:, None]  # [batch, 1, channels, state]
    dtu = dt * u  # [batch, seq_len, channels]
    h = u.new_zeros(batch, channels, state)
    track_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, B, C))
    outputs = []
    for start in range(0, seq_len, chunk_size):
        end = min(start + chunk_size, seq_len)
        dA = torch.exp(dt[:, start:end, :, None] * A)  # [batch, chunk, channels, state]
        states = dtu[:, start:end, :, None] * B[:, start:end, None, :]  # Δ·B·u, overwritten by h_t below
        if track_grad:  # autograd needs every h_t kept intact: build a list and stack it
            hs = []
            for t in range(end - start):
                h = torch.addcmul(states[:, t], dA[:, t], h)
                hs.append(h)
            states = torch.stack(hs, dim=1)
        else:  # inference: update the chunk buffer in place, no extra copies
            for t in range(end - start):
                h = torch.addcmul(states[:, t], dA[:, t], h, out=states[:, t])
        # y_t = C_t · h_t as one batched matmul: [batch*chunk, channels, state] @ [batch*chunk, state, 1]
        y = torch.matmul(states, C[:, start:end, :, None]).squeeze(-1)  # [batch, chunk, channels]
        outputs.append(y)
    return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]


def selective_scan_fused(
    u: torch.Tensor,
    dt_raw: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    gate: torch.Tensor,
) -> torch.Tensor:  # pragma: no cover - needs CUDA and mamba-ssm
    """The fused CUDA kernel of `mamba-ssm` (softplus, D skip and SiLU gate included).

    Takes `dt_raw` before bias and softplus, and `[batch, seq_len, channels]` tensors; returns the gated output in the
    same layout.
    """
    y = _cuda_selective_scan_fn(
        u.transpose(1, 2).contiguous(),
        dt_raw.transpose(1, 2).contiguous(),
        A.float(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        D.float(),
        z=gate.transpose(1, 2).contiguous(),
        delta_bias=dt_bias.float(),
        delta_softplus=True,
    )
    return y.transpose(1, 2)


__all__ = [
    "causal_depthwise_conv1d",
    "fused_kernels_available",
    "selective_scan_chunked",
    "selective_scan_fused",
    "selective_scan_reference",
]
