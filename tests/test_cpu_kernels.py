"""The compiled CPU kernels (`cpu_kernels.py`) compute the same mixer as the step-by-step reference, forward and
gradients, over each sequence's own length; where they cannot be built the model still runs, on the eager scan."""

import copy
import logging

import pytest
import torch
from torch.nn import functional as F

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, backbone_cpu, cpu_kernels, onednn
from mambaocr_hf.backbone_cpu import FusedCPUInference
from mambaocr_hf.modeling_mambaocr import MambaOCRAdapter, MambaOCRMixer

from .conftest import tiny_config_kwargs


def _mixer_pair(hidden_size, expand, state_size, bidirectional=True):
    """The same random mixer twice: on the CPU kernels and on the reference recurrence."""
    kwargs = dict(hidden_size=hidden_size, expand=expand, state_size=state_size, bidirectional=bidirectional)
    fast = MambaOCRMixer(MambaOCRConfig(scan_implementation="compiled", **kwargs))
    fast.init_mamba_weights()
    with torch.no_grad():
        for parameter in fast.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)  # also non-trivial biases, D and A
    reference = MambaOCRMixer(MambaOCRConfig(scan_implementation="reference", **kwargs))
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def test_kernels_build_on_this_machine():
    assert cpu_kernels.kernels_available(), "the CI machine has a C compiler: the kernels must build"


# channel counts that fill whole 16-channel blocks (64) and that leave a partial block (24, 40); lengths around the
# 16-frame chunk of the backward pass, and 1
@pytest.mark.parametrize("hidden_size,expand,state_size", [(32, 2, 4), (24, 1, 3), (40, 1, 8)])
@pytest.mark.parametrize("length", [1, 5, 16, 37])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_mixer_matches_reference_values_and_gradients(hidden_size, expand, state_size, length, bidirectional):
    torch.manual_seed(length + hidden_size)
    fast, reference = _mixer_pair(hidden_size, expand, state_size, bidirectional)
    hidden = torch.randn(3, length, hidden_size, requires_grad=True)
    lengths = torch.tensor([length, max(1, length - 2), max(1, length // 2)])
    out, ref = fast(hidden, lengths), reference(hidden, lengths)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, *fast.parameters()])
    grads_ref = torch.autograd.grad((ref * weights).sum(), [hidden, *reference.parameters()])
    for (name, _), grad, grad_ref in zip([("input", None), *fast.named_parameters()], grads, grads_ref):
        assert torch.allclose(grad, grad_ref, atol=1e-5 * max(1.0, grad_ref.abs().max().item()), rtol=1e-4), name


def test_padding_never_reaches_valid_frames():
    """A sequence's valid frames are the same alone and in a batch padded with garbage (both directions)."""
    torch.manual_seed(0)
    fast, _ = _mixer_pair(32, 2, 8)
    short = torch.randn(1, 9, 32)
    batch = torch.randn(2, 30, 32) * 5  # the padding frames hold large garbage
    batch[0, :9] = short[0]
    with torch.no_grad():
        alone = fast(short, torch.tensor([9]))
        padded = fast(batch, torch.tensor([9, 30]))
    assert torch.allclose(padded[0, :9], alone[0], atol=1e-5)


@pytest.mark.slow
def test_model_on_kernels_matches_reference_model():
    fast = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(scan_implementation="auto"))).eval()
    reference = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(scan_implementation="reference"))).eval()
    reference.load_state_dict(fast.state_dict())
    pixel_values = torch.randn(3, 3, 32, 96)
    pixel_mask = torch.ones(3, 32, 96, dtype=torch.long)
    pixel_mask[1, :, 40:] = 0
    with torch.no_grad():
        out = fast(pixel_values, pixel_mask=pixel_mask).logits
        ref = reference(pixel_values, pixel_mask=pixel_mask).logits
    assert torch.allclose(out, ref, atol=1e-4)


def test_training_only_out_proj_is_not_corrupted_by_another_forward():
    """With only `out_proj` training (a user freeze, LoRA on it), its saved input is the scan's output. A forward
    without gradients before the backward (a teacher, EMA or metric model) must not overwrite it: the kernels reuse
    buffers only with autograd off."""
    grads = {}
    for between in (False, True):
        torch.manual_seed(0)
        config = MambaOCRConfig(**tiny_config_kwargs(num_hidden_layers=1, scan_implementation="compiled"))
        model = MambaOCRForCTC(config).eval()
        for name, param in model.named_parameters():
            param.requires_grad = name.endswith("mixer.out_proj.weight")
        generator = torch.Generator().manual_seed(1)
        first, second = torch.randn(2, 3, 32, 64, generator=generator), torch.randn(2, 3, 32, 64, generator=generator)
        logits = model(first).logits
        if between:
            with torch.no_grad():
                model(second)
        logits.square().sum().backward()
        grads[between] = model.encoder.layers[0].mixer.out_proj.weight.grad
    torch.testing.assert_close(grads[True], grads[False], rtol=0, atol=0)


def test_bf16_weights_run_on_the_kernels():
    """`from_pretrained(..., dtype=torch.bfloat16)` / `pipeline(dtype=...)`: bf16 projections, float32 scan."""
    torch.manual_seed(0)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    pixel_values = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        full = model(pixel_values).logits
        half = copy.deepcopy(model).to(torch.bfloat16)(pixel_values.bfloat16()).logits
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), full, atol=0.15 * full.abs().max().item())


def test_linear_matches_f_linear_and_keeps_autograd():
    torch.manual_seed(0)
    x, weight, bias = torch.randn(4, 7, 24), torch.randn(16, 24), torch.randn(16)
    with torch.no_grad():
        assert torch.allclose(onednn.linear(x, weight, bias), F.linear(x, weight, bias), atol=1e-5)
        assert torch.allclose(onednn.linear(x, weight), F.linear(x, weight), atol=1e-5)
    weight.requires_grad_()
    onednn.linear(x, weight, bias).sum().backward()
    assert torch.allclose(weight.grad, x.sum((0, 1)).expand(16, -1), atol=1e-4)


def test_adapter_channels_last_path_matches_convolutions():
    torch.manual_seed(0)
    adapter = MambaOCRAdapter(24, 8)
    torch.nn.init.normal_(adapter.up.weight)
    hidden = torch.randn(2, 24, 3, 11)
    with torch.no_grad():
        expected = adapter(hidden)  # NCHW: the convolutions
        got = adapter(hidden.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5)


def test_backbone_weights_go_channels_last_and_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    pixel_values = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        logits = model(pixel_values).logits
    weights = [p for p in model.backbone.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.allclose(MambaOCRForCTC.from_pretrained(tmp_path)(pixel_values).logits, logits, atol=1e-5)


def test_build_failure_warns_once_and_the_model_falls_back(monkeypatch, tmp_path, caplog):
    """No working C compiler: one warning, then the eager scan, with the same outputs."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("MAMBAOCR_CACHE", str(tmp_path / "cache"))
    library = cpu_kernels._Library()
    monkeypatch.setattr(cpu_kernels, "_library", library)
    torch.manual_seed(0)
    fast, reference = _mixer_pair(32, 1, 4)
    hidden = torch.randn(2, 6, 32)
    lengths = torch.tensor([6, 4])
    with caplog.at_level(logging.WARNING):
        with torch.no_grad():
            out = fast(hidden, lengths)
            fast(hidden, lengths)
    assert library.failed and not cpu_kernels.kernels_available()
    assert sum("Could not build MambaOCR's CPU scan kernels" in r.getMessage() for r in caplog.records) == 1
    with torch.no_grad():
        assert torch.allclose(out, reference(hidden, lengths), atol=1e-5)


@pytest.mark.slow
def test_built_library_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMBAOCR_CACHE", str(tmp_path))
    assert cpu_kernels._Library().get() is not None
    monkeypatch.setattr(cpu_kernels, "_compile", lambda *args: pytest.fail("the cached library was rebuilt"))
    assert cpu_kernels._Library().get() is not None


def test_kernel_arguments_are_checked():
    u, proj = torch.zeros(2, 1, 4, 16), torch.zeros(2, 1, 4, 10)
    with pytest.raises(ValueError, match="rank \\+ 2 \\* state"):
        cpu_kernels.bidirectional_scan(
            u, proj, torch.zeros(2, 16, 2), -torch.ones(2, 16, 3), torch.zeros(2, 16), torch.zeros(1, 4, 16),
            torch.zeros(2, 16), torch.tensor([4]),
        )  # fmt: skip
    with pytest.raises(ValueError, match="state_size <= 32"):
        cpu_kernels.bidirectional_scan(
            u, torch.zeros(2, 1, 4, 68), torch.zeros(2, 16, 2), -torch.ones(2, 16, 33), torch.zeros(2, 16),
            torch.zeros(1, 4, 16), torch.zeros(2, 16), torch.tensor([4]),
        )  # fmt: skip


@pytest.mark.slow
def test_portable_kernels_match_the_vectorised_ones(monkeypatch, tmp_path):
    """The portable C loops (other CPUs, and partial channel blocks everywhere) against the AVX-512 block code this
    machine runs for full blocks: built without `-march=native`, the library has only the portable loops."""
    torch.manual_seed(0)
    fast, reference = _mixer_pair(64, 1, 8)
    hidden = torch.randn(3, 21, 64, requires_grad=True)
    lengths = torch.tensor([21, 17, 4])
    native = fast(hidden, lengths)
    monkeypatch.setenv("MAMBAOCR_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_library", cpu_kernels._Library(flag_sets=(["-O2", "-ffast-math", "-fopenmp"],)))
    portable = fast(hidden, lengths)
    assert torch.allclose(portable, native, atol=1e-5)
    assert torch.allclose(portable, reference(hidden, lengths), atol=1e-5)


def test_given_delta_matches_the_fused_projection():
    """A PEFT-wrapped dt_proj computes Δ itself and hands it to the kernel: same values, and the gradient reaches Δ."""
    torch.manual_seed(0)
    dirs, batch, length, channels, state, rank = 2, 3, 19, 40, 4, 3
    u = torch.randn(dirs, batch, length, channels)
    proj = torch.randn(dirs, batch, length, rank + 2 * state, requires_grad=True)
    weight = (torch.randn(dirs, channels, rank) * 0.5).requires_grad_()
    A, D = -torch.rand(dirs, channels, state) - 0.2, torch.randn(dirs, channels)
    z, bias, lengths = torch.randn(batch, length, channels), torch.randn(dirs, channels), torch.tensor([19, 11, 1])
    fused = cpu_kernels.bidirectional_scan(u, proj, weight, A, D, z, bias, lengths)
    delta = torch.matmul(proj[..., :rank], weight.transpose(1, 2)[:, None]) + bias[:, None, None]
    given = cpu_kernels.bidirectional_scan(
        u, proj, torch.zeros_like(weight), A, D, z, torch.zeros_like(bias), lengths, delta
    )
    assert torch.allclose(given, fused, atol=1e-5)
    target = torch.randn_like(fused)
    grads_fused = torch.autograd.grad((fused * target).sum(), [proj, weight])
    grads_given = torch.autograd.grad((given * target).sum(), [proj, weight])
    for grad, grad_ref in zip(grads_given, grads_fused):
        assert torch.allclose(grad, grad_ref, atol=1e-4, rtol=1e-4)


def _backbone_with_statistics(**overrides):
    """A tiny model whose BatchNorms and adapters are not at their initial values, so that folding them matters."""
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(**overrides)))
    with torch.no_grad():
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            elif isinstance(module, MambaOCRAdapter):
                module.up.weight.normal_(0, 0.05)
    return model.eval()


def _unfused_logits(model, *args, **kwargs):
    """The model's logits with the backbone's fused inference path switched off (its modules run one by one)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FusedCPUInference, "dtype_for", staticmethod(lambda body, pixel_values: None))
        return model(*args, **kwargs).logits


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet10t", "resnet18", "resnet26"])  # deep stem / basic / bottleneck blocks
def test_fused_backbone_inference_matches_the_modules(backbone):
    torch.manual_seed(0)
    model = _backbone_with_statistics(backbone=backbone)
    pixel_values = torch.randn(3, 3, 32, 72)
    pixel_mask = torch.ones(3, 72, dtype=torch.long)
    pixel_mask[1, 40:] = 0
    pixel_mask[2, 12:] = 0
    with torch.no_grad():
        fused = model(pixel_values, pixel_mask=pixel_mask).logits
        assert model.backbone._cpu_inference.cache["plan"] is not None, "the fused path did not run"
        expected = _unfused_logits(model, pixel_values, pixel_mask=pixel_mask)
        torch.testing.assert_close(fused, expected, atol=2e-5, rtol=1e-4)
        # a padded image reads as it does alone (the padding masks hold on the fused path too)
        alone = model(pixel_values[2:, :, :, :12]).logits
        torch.testing.assert_close(fused[2, :3], alone[0], atol=2e-5, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused_bf16 = model(pixel_values, pixel_mask=pixel_mask).logits.float()
            expected_bf16 = _unfused_logits(model, pixel_values, pixel_mask=pixel_mask).float()
    valid = expected > -1e3  # padding frames hold a large negative constant
    # bf16 rounds differently with and without folding: both stay as close to float32
    fused_error = (fused_bf16 - expected)[valid].abs().max()
    unfused_error = (expected_bf16 - expected)[valid].abs().max()
    assert fused_error < 2 * unfused_error + 1e-3


@pytest.mark.slow
def test_fused_backbone_packs_weights_for_repeated_shapes_only():
    # weights packed for one input shape run other shapes 2-3.5x slower than plain ones: a shape seen once runs with
    # the plain folded weights, a repeated one gets its own packed copy, and only the last two such shapes keep theirs
    torch.manual_seed(0)
    model = _backbone_with_statistics()
    backbone = model.backbone
    inputs = {(batch, width): torch.randn(batch, 3, 32, width) for batch, width in [(1, 40), (3, 24), (2, 64)]}

    def packed_shapes():
        convs = [step for step in backbone._cpu_inference.cache["plan"]["stem"] if step[0] == "conv"]
        return sorted((shape[0], shape[-1]) for shape in convs[0][5])

    with torch.no_grad():
        expected = {shape: _unfused_logits(model, x) for shape, x in inputs.items()}
        for order, (shape, after) in enumerate(
            [
                ((1, 40), []),
                ((3, 24), []),
                ((1, 40), [(1, 40)]),
                ((3, 24), [(1, 40), (3, 24)]),
                ((2, 64), [(1, 40), (3, 24)]),
                ((2, 64), [(2, 64), (3, 24)]),
                ((1, 40), [(1, 40), (2, 64)]),
            ]  # fmt: skip
        ):
            logits = model(inputs[shape]).logits
            torch.testing.assert_close(logits, expected[shape], atol=2e-5, rtol=1e-4, msg=f"call {order}")
            assert packed_shapes() == sorted(after), f"call {order}"


@pytest.mark.slow
def test_fused_backbone_follows_weight_changes_and_training():
    torch.manual_seed(0)
    model = _backbone_with_statistics()
    pixel_values = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        before = model(pixel_values).logits
        model.backbone.body.layer1[0].bn1.running_mean.add_(1.0)  # in place, as a training step or load would
        after = model(pixel_values).logits
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, _unfused_logits(model, pixel_values), atol=2e-5, rtol=1e-4)
        copied = copy.deepcopy(model)  # the folded (oneDNN-packed) weights stay behind; the copy builds its own
        assert copied.backbone._cpu_inference.cache is None
        torch.testing.assert_close(copied(pixel_values).logits, after)
    model.train()
    assert model.backbone._cpu_inference.cache is None  # the folded copies are dropped while training
    model(pixel_values, labels=torch.tensor([[1, 2], [3, -100]])).loss.backward()  # training runs the modules
    assert model.backbone.body.layer1[0].conv1.weight.grad is not None


@pytest.mark.slow
def test_fused_backbone_respects_hooks_and_peft_wrapped_convolutions():
    torch.manual_seed(0)
    model = _backbone_with_statistics()
    pixel_values = torch.randn(2, 3, 32, 48)
    seen = []
    handle = model.backbone.body.layer2[0].register_forward_hook(lambda module, args, output: seen.append(output))
    with torch.no_grad():
        model(pixel_values)
    assert seen and model.backbone._cpu_inference.cache["plan"] is None  # a user's hook still runs: no fusion
    handle.remove()
    with torch.no_grad():
        model(pixel_values)
    assert model.backbone._cpu_inference.cache["plan"] is not None

    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(
        copy.deepcopy(model), peft.LoraConfig(r=2, target_modules=["layer4.0.conv1"], init_lora_weights=False)
    ).eval()
    with torch.no_grad():
        logits = lora(pixel_values=pixel_values).logits
        assert lora.base_model.model.backbone._cpu_inference.cache["plan"] is None
        with lora.disable_adapter():
            torch.testing.assert_close(lora(pixel_values=pixel_values).logits, model(pixel_values).logits)
    assert not torch.allclose(logits, model(pixel_values).logits)


def test_fused_backbone_runs_when_first_used_under_bf16_autocast():
    # the oneDNN probe runs on first use: under autocast it must still probe in float32
    onednn.fused_conv_available.cache_clear()
    model = _backbone_with_statistics()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(1, 3, 32, 32))
    assert onednn.fused_conv_available.cache_info().misses == 1 and onednn.fused_conv_available()
    if onednn.cpu_supports_bf16():
        assert model.backbone._cpu_inference.cache["plan"] is not None
    else:  # oneDNN has no bf16 convolutions on this CPU: the modules ran
        assert model.backbone._cpu_inference.cache is None


@pytest.mark.slow
def test_bf16_autocast_runs_the_modules_where_onednn_has_no_bf16(monkeypatch):
    # CPUs without AVX-512 BF16 / AMX (e.g. AVX2-only ones): oneDNN refuses bf16 convolutions, so bf16 autocast
    # must not take the fused path there; float32 still does
    monkeypatch.setattr(backbone_cpu, "cpu_supports_bf16", lambda: False)
    model = _backbone_with_statistics()
    pixel_values = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(pixel_values).logits
            assert model.backbone._cpu_inference.cache is None
            expected = _unfused_logits(model, pixel_values)
        torch.testing.assert_close(logits, expected)
        model(pixel_values)
        assert model.backbone._cpu_inference.cache["plan"] is not None
