"""The fast pure-PyTorch scan is the same recurrence as the step-by-step reference (forward and gradients)."""

import pytest
import torch

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC
from mambaocr_hf.modeling_mambaocr import reverse_padded
from mambaocr_hf.selective_scan import causal_depthwise_conv1d, selective_scan_chunked, selective_scan_reference

from .conftest import tiny_config_kwargs


def _inputs(batch, length, channels, state, per_batch_A=False):
    u = torch.randn(batch, length, channels, dtype=torch.float32)
    dt = torch.nn.functional.softplus(torch.randn(batch, length, channels) - 1.0)
    A_shape = (batch, channels, state) if per_batch_A else (channels, state)
    A = -torch.exp(torch.randn(A_shape))
    B = torch.randn(batch, length, state)
    C = torch.randn(batch, length, state)
    return [t.requires_grad_() for t in (u, dt, A, B, C)]


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33, 70])
@pytest.mark.parametrize("chunk_size", [4, 64])
def test_chunked_scan_matches_reference(length, chunk_size):
    torch.manual_seed(length)
    inputs = _inputs(2, length, 5, 3)
    ref = selective_scan_reference(*inputs)
    grads_ref = torch.autograd.grad(ref.square().sum(), inputs)
    fast = selective_scan_chunked(*inputs, chunk_size=chunk_size)
    grads_fast = torch.autograd.grad(fast.square().sum(), inputs)
    assert fast.shape == (2, length, 5)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        assert torch.allclose(g_fast, g_ref, atol=1e-5, rtol=1e-5)


def test_inference_path_matches_training_path():
    inputs = [t.detach() for t in _inputs(3, 40, 6, 4, per_batch_A=True)]
    with torch.no_grad():
        no_grad = selective_scan_chunked(*inputs, chunk_size=16)
    with_grad = selective_scan_chunked(*[t.clone().requires_grad_() for t in inputs], chunk_size=16)
    assert torch.allclose(no_grad, with_grad.detach(), atol=1e-6)
    assert torch.allclose(no_grad, selective_scan_reference(*inputs), atol=1e-5)


def test_scan_shape_errors():
    u, dt, A, B, C = (t.detach() for t in _inputs(2, 4, 5, 3))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        selective_scan_chunked(u, dt[:, :3], A, B, C)


def test_causal_conv_is_causal():
    x = torch.randn(1, 10, 4)
    weight = torch.randn(4, 1, 3)
    y = causal_depthwise_conv1d(x, weight, None)
    x2 = x.clone()
    x2[:, 5:] = 0
    assert torch.allclose(y[:, :5], causal_depthwise_conv1d(x2, weight, None)[:, :5])


def test_reverse_padded_reverses_within_length_and_is_an_involution():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))
    assert out[:, :, 0].tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]
    assert torch.equal(reverse_padded(out, torch.tensor([5, 3])), x)


def test_model_reference_and_fast_paths_agree():
    config = MambaOCRConfig(**tiny_config_kwargs())
    fast = MambaOCRForCTC(config).eval()
    reference = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(use_reference_scan=True))).eval()
    reference.load_state_dict(fast.state_dict())
    pixel_values = torch.randn(2, 3, 32, 96)
    with torch.no_grad():
        assert torch.allclose(fast(pixel_values).logits, reference(pixel_values).logits, atol=1e-4)
