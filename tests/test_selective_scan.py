"""The fast scans are the same recurrence as the step-by-step reference (forward and gradients)."""

import pytest
import torch
from torch.nn import functional as F

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC
from mambaocr_hf.scan_paths import bidirectional_rows, reversed_positions
from mambaocr_hf.selective_scan import (
    causal_depthwise_conv1d,
    fast_softplus,
    selective_scan_chunked,
    selective_scan_export,
    selective_scan_reference,
)

from .conftest import tiny_config_kwargs


def _inputs(batch, length, channels, state, per_batch=False):
    """u, delta, A, B, C, D, z, delta_bias (the argument order of mamba-ssm's selective_scan_fn)."""
    u = torch.randn(batch, length, channels)
    delta = torch.randn(batch, length, channels) - 1.0
    A = -torch.exp(torch.randn((batch, channels, state) if per_batch else (channels, state)))
    B = torch.randn(batch, length, state)
    C = torch.randn(batch, length, state)
    D = torch.randn((batch, channels) if per_batch else (channels,))
    z = torch.randn(batch, length, channels)
    delta_bias = torch.randn((batch, channels) if per_batch else (channels,)) * 0.5
    return [t.requires_grad_() for t in (u, delta, A, B, C, D, z, delta_bias)]


def _assert_same_as_reference(scan, inputs, **kwargs):
    ref = selective_scan_reference(*inputs)
    grads_ref = torch.autograd.grad(ref.square().sum(), inputs)
    out = scan(*inputs, **kwargs)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        assert torch.allclose(g, g_ref, atol=1e-5, rtol=1e-5)


def test_fast_softplus():
    x = torch.linspace(-100, 100, 2001, requires_grad=True)
    assert torch.allclose(fast_softplus(x), F.softplus(x), atol=1e-6)
    (grad,) = torch.autograd.grad(fast_softplus(x).sum(), x)
    assert torch.allclose(grad, torch.sigmoid(x), atol=1e-6)


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33, 70])
@pytest.mark.parametrize("chunk_size", [4, 16])
def test_chunked_scan_matches_reference(length, chunk_size):
    torch.manual_seed(length)
    _assert_same_as_reference(selective_scan_chunked, _inputs(2, length, 5, 3), chunk_size=chunk_size)


def test_inference_path_matches_training_path():
    inputs = [t.detach() for t in _inputs(3, 40, 6, 4, per_batch=True)]
    with torch.no_grad():
        no_grad = selective_scan_chunked(*inputs)
    with_grad = selective_scan_chunked(*[t.clone().requires_grad_() for t in inputs])
    assert torch.allclose(no_grad, with_grad.detach(), atol=1e-6)
    assert torch.allclose(no_grad, selective_scan_reference(*inputs), atol=1e-5)


def test_scan_shape_errors():
    u, delta, A, B, C, D, z, bias = (t.detach() for t in _inputs(2, 4, 5, 3))
    for scan in (selective_scan_chunked, selective_scan_reference):
        with pytest.raises(ValueError, match="inconsistent shapes"):
            scan(u, delta, A, B[:, :3], C, D, z, bias)
        with pytest.raises(ValueError, match="A must be"):
            scan(u, delta, A[:4], B, C, D, z, bias)


def test_without_skip_and_gate_the_scan_is_the_plain_recurrence():
    u, delta, A, B, C, _, _, bias = (t.detach() for t in _inputs(2, 12, 4, 3))
    plain = selective_scan_reference(u, delta, A, B, C, delta_bias=bias)
    assert torch.allclose(selective_scan_chunked(u, delta, A, B, C, delta_bias=bias), plain, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("length", [1, 7, 16, 37])
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
def test_export_scan_matches_reference(length, chunk_size):
    """The `torch.scan` formulation used for ONNX export is the same recurrence (run eagerly here)."""
    torch.manual_seed(length)
    for per_batch in (False, True):
        inputs = [t.detach() for t in _inputs(2, length, 5, 3, per_batch)]
        with torch.no_grad():
            out = selective_scan_export(*inputs, chunk_size=chunk_size)
        assert out.shape == (2, length, 5)
        assert torch.allclose(out, selective_scan_reference(*inputs), atol=1e-5, rtol=1e-5)
    u, delta, A, B, C, _, _, bias = inputs
    plain = selective_scan_reference(u, delta, A, B, C, delta_bias=bias)
    assert torch.allclose(selective_scan_export(u, delta, A, B, C, delta_bias=bias), plain, atol=1e-5)


def test_causal_conv_export_branch_matches_the_grouped_conv(monkeypatch):
    """While exporting, per-sample kernels are applied as shifted multiply-adds (ONNX Conv needs a fixed group count)."""
    x = torch.randn(3, 11, 4)
    weight = torch.randn(3 * 4, 1, 4)
    bias = torch.randn(3 * 4)
    grouped, grouped_without_bias = causal_depthwise_conv1d(x, weight, bias), causal_depthwise_conv1d(x, weight, None)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert torch.allclose(causal_depthwise_conv1d(x, weight, bias), grouped, atol=1e-6)
    assert torch.allclose(causal_depthwise_conv1d(x, weight, None), grouped_without_bias, atol=1e-6)


def test_causal_conv_is_causal():
    x = torch.randn(1, 10, 4)
    weight = torch.randn(4, 1, 3)
    y = causal_depthwise_conv1d(x, weight, None)
    x2 = x.clone()
    x2[:, 5:] = 0
    assert torch.allclose(y[:, :5], causal_depthwise_conv1d(x2, weight, None)[:, :5])


def test_reversal_within_length_is_an_involution():
    lengths = torch.tensor([5, 3])
    positions = reversed_positions(lengths, 5)
    assert positions.tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 3, 4]]
    assert torch.equal(positions.gather(1, positions), torch.arange(5).expand(2, 5))
    assert bidirectional_rows(lengths, 5).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 3, 2, 1, 0, 7, 6, 5, 8, 9]


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["chunked", "reference"])
def test_model_scan_implementations_agree(implementation):
    fast = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(scan_implementation="auto"))).eval()
    other = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(scan_implementation=implementation))).eval()
    other.load_state_dict(fast.state_dict())
    pixel_values = torch.randn(2, 3, 32, 96)
    with torch.no_grad():
        assert torch.allclose(fast(pixel_values).logits, other(pixel_values).logits, atol=1e-4)
