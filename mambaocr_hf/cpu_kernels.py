# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""CPU kernels for the bidirectional Mamba mixer: the depthwise causal convolution and the selective scan of both
directions, forward and backward, in a small C library compiled for this CPU on first use.

Why C: the scan's work per step is tiny (one `exp` and three multiply-adds per channel and state), so PyTorch ops
spend their time launching kernels and moving `[B, L, D, N]`-sized temporaries. Here one thread owns 16 channels of
one sequence for the whole sequence: the state stays in registers, `exp` and `log` are inlined polynomials the
compiler vectorises, and Δ's low-rank projection, softplus, the `D` skip, the SiLU gate and the average of both
directions are fused into the same loop. The reverse direction reads each sequence backwards within its own length
(frame `s` of the reversed sequence is `len - 1 - s`, padding stays in place), so no reversed copies of the
activations are made, and padded frames never reach valid ones. Measured on a 2-core AMD EPYC (batch 32, 128 frames,
256 channels, 2 threads): 4.3 ms per bidirectional layer, Δ projection included, against 8.5 ms for the
`torch.compile`d 16-frame chunk kernel this replaces; a training step of the demo model went from 380 to 312 ms.

The backward pass recomputes each 16-step chunk from the state saved at its start (memory `[B, D, L/16, N]`, not
`[B, D, L, N]`), then runs the adjoint recurrence backwards in time.

The C source is `cpu_kernels.c` (checkpoints carry it as a string, in the generated `cpu_kernels_source.py`). The
library is compiled with the system C compiler (`$CC`, else `cc`) and OpenMP, cached under
`$MAMBAOCR_CACHE` (default `~/.cache/mambaocr`) by a hash of the source, flags and machine, and loaded with `ctypes`;
it links the OpenMP runtime that PyTorch already loaded, so both share one thread pool. Where no compiler works the
model uses the eager PyTorch scan, with one warning. `MAMBAOCR_DISABLE_COMPILE=1` skips the attempt.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import tempfile
import threading

import torch
from transformers.utils import logging

from .cpu_kernels_source import SOURCE

logger = logging.get_logger(__name__)

CHANNEL_BLOCK = 16  # channels per thread task: one AVX-512 vector of float32
SCAN_CHUNK = 16  # frames between saved states (backward recomputes a chunk from its start state)
MAX_STATE = 32  # the kernels keep a chunk's states on the stack
MAX_RANK = 64  # and the Δ projection's rank

_FLAG_SETS = (  # tried in order; the first that compiles is used
    ["-O3", "-march=native", "-mprefer-vector-width=512", "-mrecip=all", "-ffast-math", "-fopenmp"],
    ["-O3", "-march=native", "-ffast-math", "-fopenmp"],
    ["-O3", "-ffast-math", "-fopenmp"],
    ["-O3", "-ffast-math"],
)


class _Library:
    """Compiles and loads the kernels on first use; remembers a failure so that it is tried (and warned about)
    once per process."""

    def __init__(self, flag_sets: tuple[list[str], ...] = _FLAG_SETS):
        self.flag_sets = flag_sets
        self.lib: ctypes.CDLL | None = None
        self.failed = os.environ.get("MAMBAOCR_DISABLE_COMPILE", "0") == "1"
        self.lock = threading.Lock()

    def get(self) -> ctypes.CDLL | None:
        if self.lib is not None or self.failed:
            return self.lib
        with self.lock:
            if self.lib is None and not self.failed:
                try:
                    self.lib = self._load()
                except Exception as error:  # no compiler, unsupported platform, ...
                    self.failed = True
                    logger.warning(
                        f"Could not build MambaOCR's CPU scan kernels ({type(error).__name__}: {str(error)[:300]}); "
                        "using the eager PyTorch scan instead (several times slower). Install a C compiler (e.g. "
                        "`apt install gcc`) or set MAMBAOCR_DISABLE_COMPILE=1 to skip the attempt."
                    )
        return self.lib

    def _load(self) -> ctypes.CDLL:
        compiler = os.environ.get("CC", "cc")
        cache = os.path.join(
            os.environ.get("MAMBAOCR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mambaocr")), "kernels"
        )
        os.makedirs(cache, exist_ok=True)
        errors = []
        for flags in self.flag_sets:
            key = hashlib.sha256(
                "\0".join([SOURCE, compiler, *flags, platform.machine(), platform.node(), _cpu_signature()]).encode()
            ).hexdigest()[:20]
            path = os.path.join(cache, f"mambaocr_scan_{key}.so")
            if not os.path.exists(path):
                error = _compile(compiler, flags, path)
                if error is not None:
                    errors.append(error)
                    continue
                logger.info(f"Compiled MambaOCR's CPU scan kernels ({' '.join(flags)}) to {path}.")
            lib = ctypes.CDLL(path)
            _declare(lib)
            return lib
        raise RuntimeError("; ".join(errors))


def _cpu_signature() -> str:
    """CPU model and flags (`-march=native` code must not be reused on another CPU that shares the cache)."""
    try:
        with open("/proc/cpuinfo") as handle:
            lines = [line for line in handle if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _compile(compiler: str, flags: list[str], path: str) -> str | None:
    """Compile the source to `path` (atomically: concurrent processes may build the same file); the error or None."""
    directory = os.path.dirname(path)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        source, obj, lib = (os.path.join(work, name) for name in ("scan.c", "scan.o", "scan.so"))
        with open(source, "w") as handle:
            handle.write(SOURCE)
        # compile and link separately: linking with -ffast-math would add crtfastmath.o, which turns on
        # flush-to-zero for the whole process when the library loads
        link_flags = ["-fopenmp"] if "-fopenmp" in flags else []
        for command in (
            [compiler, *flags, "-fPIC", "-c", source, "-o", obj],
            [compiler, "-shared", *link_flags, obj, "-o", lib, "-lm"],
        ):
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as error:
                return f"{' '.join(command[:2])}...: {error}"
            if result.returncode != 0:
                return f"{' '.join(flags)}: {result.stderr.strip()[-300:]}"
        os.replace(lib, path)
    return None


_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def _declare(lib: ctypes.CDLL) -> None:
    signatures = {
        "mambaocr_conv_forward": [_P, _I64, _I64, _P, _P, _P, _P] + [_I64] * 5 + [_INT],
        "mambaocr_conv_backward": [_P, _I64, _I64, _P, _P, _P, _P, _P, _P, _P] + [_I64] * 5 + [_INT],
        "mambaocr_scan_forward": [_P] * 8 + [_I64, _I64, _P, _P, _P] + [_I64] * 7 + [_INT],
        "mambaocr_scan_backward": [_P] * 8 + [_I64, _I64] + [_P] * 11 + [_I64] * 7 + [_INT],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, None


_library = _Library()


def kernels_available() -> bool:
    """Whether the CPU kernels are built and loaded (builds them on the first call)."""
    return _library.get() is not None


def _kernels() -> ctypes.CDLL:
    lib = _library.get()
    if lib is None:
        raise RuntimeError("MambaOCR's CPU scan kernels are not available (see the warning above).")
    return lib


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record the call (inside `Function.forward` grad mode is always off, and
    `ctx.needs_input_grad` follows `requires_grad` even under `torch.no_grad()`)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _may_reuse_buffers() -> bool:
    """Whether an output may go into a reused `_inference_buffer`: only with autograd off. With it on, a later layer
    that trains (an `out_proj`, a LoRA) saves the output for its backward even when the kernel's own inputs need no
    gradient, and the next call would overwrite it unseen (its version counter is not bumped)."""
    return not torch.is_grad_enabled()


_workspace = threading.local()


def _inference_buffer(role: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 buffer of `shape` reused across calls of this thread, for outputs that die within the mixer's
    forward in inference (the convolution's output is read by x_proj and the scan, the scan's by out_proj only).

    A fresh multi-megabyte tensor costs a page fault per 4 KB on first touch: measured here, that doubles the
    convolution's time (0.97 vs 0.47 ms at batch 32 × 128 frames). Each role keeps its largest size so far, once per
    thread; the mixers of all layers share it, as they run one after the other.
    """
    buffers = _workspace.__dict__.setdefault("buffers", {})
    count = math.prod(shape)
    buffer = buffers.get(role)
    if buffer is None or buffer.numel() < count:
        buffer = buffers[role] = torch.empty(count)
    return buffer[:count].view(shape)


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _rows(view: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """A float32 `[B, L, C]` tensor whose channels are contiguous, with its batch and frame strides (views of a
    wider tensor, like the halves of `in_proj`'s output, are passed without a copy)."""
    if view.dtype != torch.float32 or view.stride(-1) != 1:
        view = view.float().contiguous()
    return view, view.stride(0), view.stride(1)


class _ConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lengths, needs_grad, reuse_buffer):
        x, x_sb, x_st = _rows(x)
        dirs, channels, kernel = weight.shape
        batch, seq_len, _ = x.shape
        weight_t = weight.detach().float().transpose(1, 2).contiguous()  # [dirs, K, I]
        bias32 = None if bias is None else bias.detach().float().contiguous()
        shape = (dirs, batch, seq_len, channels)
        u = _inference_buffer("conv", shape) if reuse_buffer else x.new_empty(shape)
        _kernels().mambaocr_conv_forward(
            _ptr(x), x_sb, x_st, _ptr(weight_t), _ptr(bias32), _ptr(lengths), _ptr(u),
            dirs, batch, seq_len, channels, kernel, torch.get_num_threads(),
        )  # fmt: skip
        if needs_grad:
            ctx.save_for_backward(x, weight_t, bias32, lengths)
            ctx.strides, ctx.has_bias, ctx.weight_dtype = (x_sb, x_st), bias is not None, weight.dtype
        return u

    @staticmethod
    def backward(ctx, grad_u):
        x, weight_t, bias32, lengths = ctx.saved_tensors
        dirs, kernel, channels = weight_t.shape
        batch, seq_len, _ = x.shape
        grad_u = grad_u.float().contiguous()
        dx = x.new_zeros(batch, seq_len, channels)
        dw = x.new_zeros(batch, dirs, kernel, channels)
        dbias = x.new_zeros(batch, dirs, channels)
        _kernels().mambaocr_conv_backward(
            _ptr(x), *ctx.strides, _ptr(weight_t), _ptr(bias32), _ptr(lengths), _ptr(grad_u), _ptr(dx), _ptr(dw),
            _ptr(dbias), dirs, batch, seq_len, channels, kernel, torch.get_num_threads(),
        )  # fmt: skip
        dweight = dw.sum(0).transpose(1, 2).to(ctx.weight_dtype)  # [dirs, I, K]
        return dx, dweight, dbias.sum(0) if ctx.has_bias else None, None, None, None


class _ScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, proj, dt_weight, A, D, z, delta_bias, lengths, delta, needs_grad, reuse_buffer):
        dirs, batch, seq_len, channels = u.shape
        state, rank = A.shape[-1], dt_weight.shape[-1]
        z, z_sb, z_st = _rows(z)
        u, proj = u.float().contiguous(), proj.float().contiguous()
        delta = None if delta is None else delta.float().contiguous()
        dt_weight_t = dt_weight.detach().float().transpose(1, 2).contiguous()  # [dirs, R, I]
        A_t = A.detach().float().transpose(1, 2).contiguous()  # [dirs, N, I]
        D32, bias32 = (t.detach().float().contiguous() for t in (D, delta_bias))
        y = (
            _inference_buffer("scan", (batch, seq_len, channels))
            if reuse_buffer
            else u.new_empty(batch, seq_len, channels)
        )
        states = u.new_empty(dirs, batch, -(-seq_len // SCAN_CHUNK), state, channels) if needs_grad else None
        _kernels().mambaocr_scan_forward(
            _ptr(u), _ptr(proj), _ptr(delta), _ptr(dt_weight_t), _ptr(A_t), _ptr(D32), _ptr(bias32), _ptr(z), z_sb, z_st,
            _ptr(lengths), _ptr(y), _ptr(states), dirs, batch, seq_len, channels, state, rank, proj.shape[-1],
            torch.get_num_threads(),
        )  # fmt: skip
        if needs_grad:
            ctx.save_for_backward(u, proj, delta, dt_weight_t, A_t, D32, bias32, z, lengths, states)
            ctx.z_strides = (z_sb, z_st)
            ctx.dtypes = [t.dtype for t in (dt_weight, A, D, delta_bias)]
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, proj, delta, dt_weight_t, A_t, D32, bias32, z, lengths, states = ctx.saved_tensors
        dirs, batch, seq_len, channels = u.shape
        state, rank, width = A_t.shape[1], dt_weight_t.shape[1], proj.shape[-1]
        blocks = -(-channels // CHANNEL_BLOCK)
        grad_y = grad_y.float().contiguous()
        du = torch.empty_like(u)
        dz = u.new_empty(batch, seq_len, channels)
        dproj = u.new_empty(blocks, dirs, batch, seq_len, width)
        dW = u.new_empty(batch, dirs, rank, channels)
        ddelta = None if delta is None else torch.empty_like(u)
        dA = u.new_empty(batch, dirs, state, channels)
        dD, dbias = u.new_empty(batch, dirs, channels), u.new_empty(batch, dirs, channels)
        _kernels().mambaocr_scan_backward(
            _ptr(u), _ptr(proj), _ptr(delta), _ptr(dt_weight_t), _ptr(A_t), _ptr(D32), _ptr(bias32), _ptr(z),
            *ctx.z_strides, _ptr(lengths), _ptr(states), _ptr(grad_y), _ptr(du), _ptr(dz), _ptr(dproj), _ptr(ddelta),
            _ptr(dW), _ptr(dA),
            _ptr(dD), _ptr(dbias), dirs, batch, seq_len, channels, state, rank, width, torch.get_num_threads(),
        )  # fmt: skip
        w_dtype, a_dtype, d_dtype, bias_dtype = ctx.dtypes
        return (
            du, dproj.sum(0), dW.sum(0).transpose(1, 2).to(w_dtype), dA.sum(0).transpose(1, 2).to(a_dtype),
            dD.sum(0).to(d_dtype), dz, dbias.sum(0).to(bias_dtype), None, ddelta, None, None,
        )  # fmt: skip


def bidirectional_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lengths: torch.LongTensor
) -> torch.Tensor:
    """Depthwise causal convolution + SiLU for each direction, in natural frame order.

    Args:
        x: `[B, L, I]` (any float dtype; a channels-contiguous view is read in place).
        weight: `[dirs, I, K]` (direction 0 forward, direction 1 reading each sequence backwards within its length).
        bias: `[dirs, I]` or `None`.
        lengths: `[B]` valid frames per sequence.

    Returns:
        `[dirs, B, L, I]` float32: direction 1's output for frame `t` is its value at reversed step `len - 1 - t`.
    """
    lengths = lengths.to(torch.int64).contiguous()
    return _ConvFunction.apply(x, weight, bias, lengths, _needs_grad(x, weight, bias), _may_reuse_buffers())


def bidirectional_scan(
    u: torch.Tensor,
    proj: torch.Tensor,
    dt_weight: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    delta_bias: torch.Tensor,
    lengths: torch.LongTensor,
    delta: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gated selective scan of each direction, averaged over the directions, in natural frame order.

    Args:
        u: the convolved input `[dirs, B, L, I]`.
        proj: `x_proj`'s output `[dirs, B, L, R + 2N]`: the low-rank Δ input, then B, then C. Δ is
            `softplus(dt_low · dt_weightᵀ + delta_bias)`, computed inside the kernel (no `[dirs, B, L, I]` Δ tensor).
        dt_weight: `dt_proj.weight` of each direction, `[dirs, I, R]`; delta_bias its bias `[dirs, I]`.
        A: `[dirs, I, N]` (negative); D: `[dirs, I]`.
        z: the gate `[B, L, I]`, shared by the directions.
        lengths: `[B]`.
        delta: `[dirs, B, L, I]`, optional: Δ before softplus and `delta_bias`, computed by the caller (e.g. by a
            PEFT-wrapped `dt_proj`); `dt_weight` and proj's first R values are then ignored.

    Returns:
        `[B, L, I]` float32: `mean_d (y_d + D_d · u_d) ⊙ silu(z)`, where direction 1 scans each sequence backwards
        from its last valid frame.
    """
    state, rank = A.shape[-1], dt_weight.shape[-1]
    if state > MAX_STATE or rank > MAX_RANK:
        raise ValueError(
            f"The CPU scan kernels support state_size <= {MAX_STATE} and time_step_rank <= {MAX_RANK}, got {state} "
            f"and {rank}."
        )
    if proj.shape[-1] != rank + 2 * state:
        raise ValueError(
            f"proj has {proj.shape[-1]} values per frame; expected rank + 2 * state = {rank + 2 * state}."
        )
    if delta is not None and delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}.")
    lengths = lengths.to(torch.int64).contiguous()
    needs_grad = _needs_grad(u, proj, dt_weight, A, D, z, delta_bias, delta)
    return _ScanFunction.apply(
        u, proj, dt_weight, A, D, z, delta_bias, lengths, delta, needs_grad, _may_reuse_buffers()
    )


__all__ = ["bidirectional_conv", "bidirectional_scan", "kernels_available"]
