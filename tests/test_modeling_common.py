"""The checks every MambaOCR variant must pass, in the manner of transformers' `ModelTesterMixin`: a
`MambaOCRModelTester` builds tiny configs and inputs, and `TestMambaOCRModelCommon` runs the common checks (save/load,
tuple against `return_dict`, hidden states, initialisation, gradient checkpointing, batching) on each sequence model.
Checks of one part of the model (the stride patch, adapters, the Mamba mixer, freezing, bad inputs) are in
`test_modeling_mambaocr.py`."""

import math

import pytest
import torch
from torch import nn

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.configuration_mambaocr import SEQUENCE_MODELS

from .conftest import tiny_config_kwargs


class MambaOCRModelTester:
    """Tiny configs (`tiny_config_kwargs`: resnet10t, width 32, 2 layers) and a padded batch of three images of widths
    64, 40 and 12 pixels (16, 10 and 3 frames) with labels padded by -100."""

    def __init__(self, sequence_model: str = "mamba", batch_size: int = 3, widths=(64, 40, 12), **overrides):
        self.sequence_model = sequence_model
        self.batch_size = batch_size
        self.widths = widths
        self.overrides = overrides

    def get_config(self, **kwargs) -> MambaOCRConfig:
        return MambaOCRConfig(
            **tiny_config_kwargs(**{"sequence_model": self.sequence_model, **self.overrides, **kwargs})
        )

    def prepare_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`pixel_values` (zero past each image's width), `pixel_mask` and `labels`."""
        pixel_values = torch.randn(self.batch_size, 3, 32, max(self.widths))
        pixel_mask = torch.zeros(self.batch_size, max(self.widths), dtype=torch.long)
        for index, width in enumerate(self.widths):
            pixel_mask[index, :width] = 1
            pixel_values[index, :, :, width:] = 0
        labels = torch.tensor([[11, 12, 13, 14], [15, 15, -100, -100], [16, -100, -100, -100]])
        return pixel_values, pixel_mask, labels

    def prepare_config_and_inputs(self) -> tuple[MambaOCRConfig, dict[str, torch.Tensor]]:
        pixel_values, pixel_mask, labels = self.prepare_inputs()
        return self.get_config(), {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": labels}

    def frame_lengths(self, config: MambaOCRConfig) -> list[int]:
        return [width // config.frame_stride for width in self.widths]

    def num_hidden_states(self, config: MambaOCRConfig) -> int:
        """What `output_hidden_states=True` returns: the encoder's input, then each Mamba / residual BiLSTM layer's
        output, or the BiLSTM's / transformer's output as a whole; the input alone without a sequence model."""
        per_layer = config.num_hidden_layers + 1
        return {"mamba": per_layer, "bilstm_residual": per_layer, "bilstm": 2, "transformer": 2, "none": 1}[
            config.sequence_model
        ]


def _looks_normal(weight: torch.Tensor, std: float) -> bool:
    """Whether `weight` could be drawn from N(0, std²): its mean within 5 standard errors of 0, its standard deviation
    within 20% of `std` (the estimate's own error is ~3% for the smallest matrices here, 512 values)."""
    return (
        abs(weight.mean().item()) < 5 * std / math.sqrt(weight.numel()) and abs(weight.std().item() - std) < 0.2 * std
    )


def _within_xavier_bound(weight: torch.Tensor) -> bool:
    fan_out, fan_in = weight.shape
    return weight.abs().max().item() <= math.sqrt(6 / (fan_in + fan_out))


# the default encoder in every run; the ablation encoders (bilstm, transformer, none) with the slow tests
DEFAULT_SEQUENCE_MODEL = MambaOCRConfig().sequence_model


@pytest.fixture(
    params=[
        name if name == DEFAULT_SEQUENCE_MODEL else pytest.param(name, marks=pytest.mark.slow)
        for name in SEQUENCE_MODELS
    ]
)
def tester(request):
    return MambaOCRModelTester(sequence_model=request.param)


class TestMambaOCRModelCommon:
    def test_output_shapes_and_tuple_against_return_dict(self, tester):
        config, inputs = tester.prepare_config_and_inputs()
        model = MambaOCRForCTC(config).eval()
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
            tuple_out = model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"], return_dict=False)
            tuple_with_loss = model(**inputs, output_hidden_states=True, return_dict=False)
        assert list(out.keys())[0] == "loss" and torch.isfinite(out.loss)
        assert out.logits.shape == (3, 16, 37)  # width / 4 frames
        assert out.frame_lengths.tolist() == tester.frame_lengths(config) == [16, 10, 3]
        assert len(tuple_out) == 2  # no loss without labels, no hidden states unless asked for
        assert torch.allclose(tuple_out[0], out.logits) and tuple_out[1].tolist() == [16, 10, 3]
        assert len(tuple_with_loss) == 4 and torch.equal(tuple_with_loss[0], out.loss)
        assert torch.equal(tuple_with_loss[1], out.logits) and torch.equal(tuple_with_loss[2], out.frame_lengths)
        assert all(torch.equal(a, b) for a, b in zip(tuple_with_loss[3], out.hidden_states, strict=True))

    def test_hidden_states(self, tester):
        config, inputs = tester.prepare_config_and_inputs()
        model = MambaOCRForCTC(config).eval()
        with torch.no_grad():
            out = model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"], output_hidden_states=True)
            assert model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"]).hidden_states is None
        assert len(out.hidden_states) == tester.num_hidden_states(config)
        if config.sequence_model == "mamba":
            assert len(out.hidden_states) == 3  # projection + 2 layers
        for hidden in out.hidden_states:
            assert hidden.shape == (3, 16, config.hidden_size) and torch.isfinite(hidden).all()

    def test_save_load_round_trip(self, tester, tmp_path):
        model = MambaOCRForCTC(tester.get_config()).eval()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").is_file()
        assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
        loaded = MambaOCRForCTC.from_pretrained(tmp_path).eval()
        assert loaded.config.sequence_model == tester.sequence_model
        state, loaded_state = model.state_dict(), loaded.state_dict()
        assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)
        pixel_values, pixel_mask, _ = tester.prepare_inputs()
        with torch.no_grad():
            logits, loaded_logits = model(pixel_values, pixel_mask).logits, loaded(pixel_values, pixel_mask).logits
        if tester.sequence_model.startswith("bilstm"):
            # the same weights, read from the file's memory map at other addresses: the LSTM's matrix products
            # round differently there (by ~1e-9; `load_state_dict` of the same tensors gives identical logits)
            torch.testing.assert_close(logits, loaded_logits, rtol=0, atol=1e-6)
        else:
            assert torch.equal(logits, loaded_logits)

    def test_initialization(self, tester):
        """Finite weights with the statistics each part is meant to start from: `initializer_range` normals with zero
        biases for the projections and the head, identity adapters and norms, Mamba's S4D-real A, unit D and Δ in
        [time_step_min, time_step_max], Xavier-uniform LSTM and attention input weights, and timm's ResNet init
        untouched."""
        config = tester.get_config()
        model = MambaOCRForCTC(config)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            assert torch.isfinite(tensor).all(), name
        std = config.initializer_range
        own_init = (nn.LSTM, nn.MultiheadAttention)  # checked below
        for name, module in model.named_modules():
            if name.startswith("backbone.body") or isinstance(module, own_init):
                continue
            if isinstance(module, nn.Linear) and not name.rsplit(".", 1)[-1].startswith("dt_proj"):  # Δ: below
                assert _looks_normal(module.weight, std), name
                assert module.bias is None or torch.count_nonzero(module.bias) == 0, name
            elif isinstance(module, nn.Conv2d):  # the adapters' 1×1 convolutions
                if getattr(module, "zero_init", False):
                    assert torch.count_nonzero(module.weight) == torch.count_nonzero(module.bias) == 0, name
                else:
                    assert _looks_normal(module.weight, std), name
            elif isinstance(module, nn.LayerNorm) or type(module).__name__ == "MambaOCRRMSNorm":
                assert torch.all(module.weight == 1), name
                assert getattr(module, "bias", None) is None or torch.count_nonzero(module.bias) == 0, name
        for name, module in model.named_modules():
            if type(module).__name__ == "MambaOCRMixer":
                for suffix in ("", "_reverse") if config.bidirectional else ("",):
                    a_log = getattr(module, f"A_log{suffix}")
                    expected = torch.log(torch.arange(1, config.state_size + 1, dtype=torch.float32))
                    assert torch.allclose(a_log, expected.expand_as(a_log)), name
                    assert torch.all(getattr(module, f"D{suffix}") == 1), name
                    dt = nn.functional.softplus(getattr(module, f"dt_proj{suffix}").bias)
                    assert dt.min() >= config.time_step_min * 0.999 and dt.max() <= config.time_step_max * 1.001
                    bound = config.time_step_rank**-0.5
                    assert getattr(module, f"dt_proj{suffix}").weight.abs().max() <= bound, name
            elif isinstance(module, nn.LSTM):  # transformers' init: Xavier-uniform weights, zero biases
                for weight_name, weight in module.named_parameters():
                    if weight_name.startswith("weight"):
                        assert _within_xavier_bound(weight), f"{name}.{weight_name}"
                    else:
                        assert torch.count_nonzero(weight) == 0, f"{name}.{weight_name}"
            elif isinstance(module, nn.MultiheadAttention):  # PyTorch's own (`_reset_parameters`)
                assert _within_xavier_bound(module.in_proj_weight), name
                assert torch.count_nonzero(module.in_proj_bias) == 0, name
        body = model.backbone.body
        for name, module in body.named_modules():
            if isinstance(module, nn.BatchNorm2d):  # 0 for the last norm of a residual branch (`zero_init_last`)
                assert set(module.weight.unique().tolist()) <= {0.0, 1.0}, name
                assert torch.count_nonzero(module.bias) == 0 and torch.all(module.running_var == 1), name

    def test_gradient_checkpointing_gives_the_same_gradients(self, tester):
        """The same gradients, and the same BatchNorm running statistics: the recomputation in backward must not count
        the batch a second time."""
        config = tester.get_config()
        pixel_values, pixel_mask, labels = tester.prepare_inputs()
        grads, stats = [], []
        for checkpointing in (False, True):
            torch.manual_seed(0)
            model = MambaOCRForCTC(config).train()
            if checkpointing:
                model.gradient_checkpointing_enable()
                assert model.backbone.gradient_checkpointing
                if config.sequence_model in ("mamba", "bilstm_residual"):  # checkpointed block by block
                    assert model.encoder.layers[0].gradient_checkpointing
            model(pixel_values, pixel_mask=pixel_mask, labels=labels).loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            stats.append({n: b.clone() for n, b in model.named_buffers() if "running_" in n or "num_batches" in n})
        assert grads[0].keys() == grads[1].keys()
        for name in grads[0]:
            assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name
        assert stats[0] and stats[0].keys() == stats[1].keys()
        assert stats[1]["backbone.body.layer2.0.bn1.num_batches_tracked"] == 1
        for name in stats[0]:
            assert torch.allclose(stats[0][name], stats[1][name], atol=1e-6), name

    def test_batching_equivalence(self, tester):
        """An image in a mixed-width batch gets the same per-frame probabilities as alone, and decodes the same."""
        model = MambaOCRForCTC(tester.get_config()).eval()
        pixel_values, pixel_mask, _ = tester.prepare_inputs()
        pixel_values[1, :, :, 40:] = 5.0  # garbage in the padding must not matter either
        processor = MambaOCRProcessor.from_defaults()
        with torch.no_grad():
            batch = model(pixel_values, pixel_mask=pixel_mask)
            batch_probs = batch.logits.softmax(-1)
            texts = processor.batch_decode(batch.logits)
            for index, width in enumerate(tester.widths):
                alone = model(pixel_values[index : index + 1, :, :, :width]).logits
                frames = batch.frame_lengths[index]
                assert torch.allclose(alone.softmax(-1)[0], batch_probs[index, :frames], atol=1e-3)
                assert processor.batch_decode(alone) == [texts[index]]
                # padded frames are certain blanks
                assert torch.all(batch_probs[index, frames:, model.config.blank_id] > 0.999)

    def test_training_step_gives_finite_loss_and_gradients(self, tester):
        config, inputs = tester.prepare_config_and_inputs()
        model = MambaOCRForCTC(config).train()
        loss = model(**inputs).loss
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        for name, param in model.named_parameters():
            if "adapters" in name and ".down." in name:
                continue  # an adapter's down-projection gets no gradient while its up-projection is still zero
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
