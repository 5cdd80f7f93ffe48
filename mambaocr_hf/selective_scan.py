# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Selective scan (Mamba-1 recurrence) in pure PyTorch, with the fused `mamba-ssm` kernels used when available.

The recurrence, per channel `d` and state `n`, with Δ = softplus(delta + delta_bias) and discretisation as in Mamba
(zero-order hold for A, Euler for B):

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · B_t · u_t        y_t = C_t · h_t

The output is gated as in Mamba: `(y + D·u) ⊙ silu(z)`; the arguments follow `mamba_ssm`'s `selective_scan_fn`
(`u, delta, A, B, C, D, z, delta_bias`, softplus always applied). Tensors are sequence-major (`[batch, seq_len, channels]`), the layout
of the model's hidden states, so no transposes are needed around the scan.

Two PyTorch implementations of the same recurrence, tested against each other:

* `selective_scan_reference`: one time step at a time, the oracle.
* `selective_scan_chunked`: eager PyTorch; `exp(Δ·A)` for 16 frames at a time in one vectorised op, then one fused
  multiply-add per step. Works on every device, also under tracing (which fixes the traced length).

On CPU the model normally uses neither: `cpu_kernels.py` runs the convolution and the scan of both directions in a
small compiled C library (several times faster, also in training), and falls back to `selective_scan_chunked`
where it cannot be built.

And one for ONNX export, `selective_scan_export`: chunks of frames as a `torch.scan` loop, which
`torch.onnx.export(..., dynamo=True)` turns into an ONNX `Scan` whose trip count follows the input's length (a Python
loop would be unrolled at the example's length).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers.utils import logging

try:  # optional CUDA kernels (`pip install mambaocr-hf[cuda]`)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan_fn
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_selective_scan_fn = None

try:  # pragma: no cover - depends on the machine
    from causal_conv1d import causal_conv1d_fn as _cuda_causal_conv1d_fn
except ImportError:  # pragma: no cover - depends on the machine
    _cuda_causal_conv1d_fn = None

logger = logging.get_logger(__name__)

CHUNK_SIZE = 16
# Frames per ONNX `Scan` iteration of `selective_scan_export`. ONNX Runtime ran the default model equally fast with
# 1, 4, 8 or 16 (its loop overhead is small next to the per-step work, and the backbone dominates); 4 keeps the graph
# and the export time small.
EXPORT_CHUNK_SIZE = 4


def is_exporting() -> bool:
    """Whether `torch.export` (and so the ONNX exporter) is tracing the model; `False` on torch releases without
    `torch.compiler.is_exporting`."""
    check = getattr(torch.compiler, "is_exporting", None)
    return bool(check()) if check is not None else False


def is_tracing() -> bool:
    """Whether TorchScript tracing, `torch.compile` or the ONNX exporter is tracing the model: paths that call custom
    kernels or branch on tensor values step aside then."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def fused_kernels_available() -> bool:
    """Whether the fused `mamba-ssm` selective-scan kernel can be imported (it needs CUDA)."""
    return _cuda_selective_scan_fn is not None


def fast_softplus(x: torch.Tensor) -> torch.Tensor:
    """`softplus(x) = max(x, 0) + log(1 + exp(-|x|))`: stable, and several times faster on CPU than
    `F.softplus`/`log1p`, which many PyTorch CPU builds do not vectorise."""
    return x.clamp(min=0) + torch.log(1 + torch.exp(-x.abs()))


def causal_depthwise_conv1d(
    hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Depthwise causal convolution over the sequence followed by SiLU.

    Args:
        hidden_states: `[batch, seq_len, channels]`.
        weight: `[channels, 1, kernel]` (the layout of `nn.Conv1d(groups=channels)`), or `[batch * channels, 1,
            kernel]` for a kernel per sample (e.g. the two directions of a bidirectional layer stacked in the batch).
        bias: `[channels]`, `[batch * channels]` or `None`.

    Returns:
        `[batch, seq_len, channels]`; frame `t` only sees frames `<= t`.
    """
    batch, seq_len, channels = hidden_states.shape
    kernel = weight.shape[-1]
    x = hidden_states.transpose(1, 2)  # [batch, channels, seq_len]
    if weight.shape[0] == channels:
        if _cuda_causal_conv1d_fn is not None and x.is_cuda:  # pragma: no cover - needs CUDA
            return _cuda_causal_conv1d_fn(x.contiguous(), weight.squeeze(1), bias, activation="silu").transpose(1, 2)
        x = F.conv1d(F.pad(x, (kernel - 1, 0)), weight, bias, groups=channels)
    elif is_exporting():
        # ONNX Conv needs a constant group count and batch * channels is not one with a dynamic batch: write the
        # convolution as `kernel` shifted multiply-adds instead
        per_sample = weight.view(batch, channels, kernel)
        padded = F.pad(hidden_states, (0, 0, kernel - 1, 0))  # [batch, kernel - 1 + seq_len, channels]
        out = padded[:, :seq_len] * per_sample[:, None, :, 0]
        for k in range(1, kernel):
            out = out + padded[:, k : k + seq_len] * per_sample[:, None, :, k]
        return F.silu(out if bias is None else out + bias.view(batch, 1, channels))
    else:  # a kernel per sample: fold the batch into the channels of one grouped convolution
        x = F.conv1d(
            F.pad(x.reshape(1, batch * channels, seq_len), (kernel - 1, 0)), weight, bias, groups=batch * channels
        )
    return F.silu(x.view(batch, channels, seq_len)).transpose(1, 2)


def _prepare(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """Check shapes, cast to float32, broadcast A to `[batch, channels, state]` and apply softplus(delta + bias)."""
    batch, seq_len, channels = u.shape
    state = A.shape[-1]
    if delta.shape != u.shape or B.shape != (batch, seq_len, state) or C.shape != (batch, seq_len, state):
        raise ValueError(
            f"selective scan got inconsistent shapes: u {tuple(u.shape)}, delta {tuple(delta.shape)}, "
            f"A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    if A.dim() not in (2, 3) or A.shape[-2] != channels:
        raise ValueError(f"A must be [channels, state] or [batch, channels, state], got {tuple(A.shape)}")
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + (delta_bias.float()[:, None, :] if delta_bias.dim() == 2 else delta_bias.float())
    dt = fast_softplus(delta)  # [batch, seq_len, channels]
    A = A.float().expand(batch, channels, state)
    return u.float(), dt, A, B.float(), C.float()


def _per_batch(value: torch.Tensor | None, batch: int, channels: int) -> torch.Tensor | None:
    """`[channels]` or `[batch, channels]` → float32 `[batch, channels]`."""
    return None if value is None else value.float().expand(batch, channels)


def _gate(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """`(y + D·u) ⊙ silu(z)` for `[batch, seq_len, channels]` tensors (D `[batch, channels]`)."""
    if D is not None:
        y = y + u * D[:, None, :]
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The recurrence written out one time step at a time, in float32: the oracle the fast paths are tested against.

    Args:
        u: input `[batch, seq_len, channels]`.
        delta: step sizes before softplus `[batch, seq_len, channels]`.
        A: negative real diagonal state matrix `[channels, state]`, or `[batch, channels, state]` when the batch
            stacks several mixers (e.g. both directions of a bidirectional layer).
        B, C: input-dependent projections `[batch, seq_len, state]`.
        D: skip weights `[channels]` or `[batch, channels]`, optional.
        z: gate `[batch, seq_len, channels]`, optional.
        delta_bias: `[channels]` or `[batch, channels]`, added to `delta` before the softplus.

    Returns:
        `(y + D·u) ⊙ silu(z)`, `[batch, seq_len, channels]` in float32.
    """
    u, dt, A, B, C = _prepare(u, delta, A, B, C, delta_bias)
    batch, seq_len, channels = u.shape
    D = _per_batch(D, batch, channels)
    h = u.new_zeros(batch, channels, A.shape[-1])  # [batch, channels, state]
    ys = []
    for t in range(seq_len):
        dA = torch.exp(dt[:, t, :, None] * A)  # [batch, channels, state]
        dBu = dt[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]
        h = dA * h + dBu
        ys.append((h * C[:, t, None, :]).sum(-1))  # [batch, channels]
    return _gate(torch.stack(ys, dim=1), u, D, z)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> torch.Tensor:
    """Eager selective scan with memory linear in the sequence length.

    `exp(Δ·A)` is computed for `chunk_size` frames in one vectorised op (`[batch, chunk, channels, state]`, never
    the whole sequence at once); the loop then does one fused multiply-add per step, and the read-out `C·h` of a chunk
    is one batched matmul. Arguments and return value as in [`selective_scan_reference`].
    """
    u, dt, A, B, C = _prepare(u, delta, A, B, C, delta_bias)
    batch, seq_len, channels = u.shape
    D = _per_batch(D, batch, channels)
    A = A[:, None]  # [batch, 1, channels, state]
    dtu = (dt * u)[..., None]  # [batch, seq_len, channels, 1]
    B = B[:, :, None, :]  # [batch, seq_len, 1, state]
    h = u.new_zeros(batch, channels, A.shape[-1])
    track_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, dt, A, B, C))
    outputs = []
    for start in range(0, seq_len, chunk_size):
        end = min(start + chunk_size, seq_len)
        dA = torch.exp(dt[:, start:end, :, None] * A)  # [batch, chunk, channels, state]
        if track_grad:  # autograd needs every h_t kept intact
            hs = []
            for t in range(end - start):
                h = torch.addcmul(dA[:, t] * h, dtu[:, start + t], B[:, start + t])
                hs.append(h)
            states = torch.stack(hs, dim=1)
        else:  # inference: write the states over dA, no extra buffers
            states = dA
            for t in range(end - start):
                h = torch.mul(dA[:, t], h, out=states[:, t]).addcmul_(dtu[:, start + t], B[:, start + t])
        # y_t = C_t · h_t as one batched matmul: [batch, chunk, channels, state] @ [batch, chunk, state, 1]
        outputs.append(torch.matmul(states, C[:, start:end, :, None]).squeeze(-1))
    y = torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
    return _gate(y, u, D, z)


def selective_scan_fused(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
) -> torch.Tensor:  # pragma: no cover - needs CUDA and mamba-ssm
    """The fused CUDA kernel of `mamba-ssm`, for one mixer (A `[channels, state]`, D and delta_bias `[channels]`).

    Takes `[batch, seq_len, channels]` tensors; returns the gated output in the same layout.
    """
    y = _cuda_selective_scan_fn(
        u.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A.float(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        D.float(),
        z=z.transpose(1, 2).contiguous(),
        delta_bias=delta_bias.float(),
        delta_softplus=True,
    )
    return y.transpose(1, 2)


def selective_scan_export(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    chunk_size: int = EXPORT_CHUNK_SIZE,
) -> torch.Tensor:
    """Selective scan as a `torch.scan` over chunks of `chunk_size` frames, for ONNX export with a dynamic length.

    `torch.onnx.export(..., dynamo=True)` exports `torch.scan` as one ONNX `Scan` node, so the exported graph runs any
    sequence length; each iteration does `chunk_size` unrolled steps. The sequence is zero-padded to a whole number of
    chunks: with Δ = 0 a padded step leaves the state as it is, and its outputs are dropped. Memory is linear in the
    length: the `[batch, chunk, channels, state]` buffers exist for one chunk at a time. Meant for export and
    inference (the model selects it while `torch.export` runs); arguments and return value as in
    [`selective_scan_reference`].
    """
    u, dt, A, B, C = _prepare(u, delta, A, B, C, delta_bias)
    batch, seq_len, channels = u.shape
    D = _per_batch(D, batch, channels)
    pad = (-seq_len) % chunk_size
    num_chunks = (seq_len + pad) // chunk_size

    def to_chunks(values: torch.Tensor) -> torch.Tensor:  # [batch, seq_len, k] -> [num_chunks, batch, chunk, k]
        values = F.pad(values, (0, 0, 0, pad))
        return values.reshape(batch, num_chunks, chunk_size, values.shape[-1]).transpose(0, 1)

    A = A[:, None]  # [batch, 1, channels, state]

    def chunk_step(
        h: torch.Tensor, inputs: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:  # h [batch, channels, state]
        dt_chunk, dtu_chunk, B_chunk, C_chunk = inputs  # [batch, chunk, channels] x2, [batch, chunk, state] x2
        dA = torch.exp(dt_chunk[..., None] * A)  # [batch, chunk, channels, state]
        dBu = dtu_chunk[..., None] * B_chunk[:, :, None, :]
        states = []
        for dA_t, dBu_t in zip(dA.unbind(1), dBu.unbind(1)):  # one Split per chunk in ONNX, not a Gather per step
            h = dA_t * h + dBu_t
            states.append(h)
        # y_t = C_t · h_t: [batch, chunk, channels, state] @ [batch, chunk, state, 1]
        y = torch.matmul(torch.stack(states, dim=1), C_chunk[..., None]).squeeze(-1)
        return h, y

    h = u.new_zeros(batch, channels, A.shape[-1])
    try:  # a private torch API (torch >= 2.6): imported only here, so that the other paths work on older torch
        from torch._higher_order_ops.scan import scan as _scan_loop
    except ImportError as error:  # pragma: no cover - depends on the torch release
        raise ImportError(
            f"ONNX export of the Mamba scan needs `torch.scan` (torch >= 2.6); this is torch {torch.__version__}."
        ) from error
    _, y = _scan_loop(chunk_step, h, tuple(to_chunks(t) for t in (dt, dt * u, B, C)))  # [num_chunks, batch, chunk, ch]
    y = y.transpose(0, 1).reshape(batch, num_chunks * chunk_size, channels)[:, :seq_len]
    return _gate(y, u, D, z)


__all__ = [
    "causal_depthwise_conv1d",
    "is_exporting",
    "is_tracing",
    "fast_softplus",
    "fused_kernels_available",
    "selective_scan_chunked",
    "selective_scan_export",
    "selective_scan_fused",
    "selective_scan_reference",
]
