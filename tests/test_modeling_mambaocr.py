"""Checks of MambaOCR's parts with the tiny configs of `MambaOCRModelTester`: the stride patch, adapters, the Mamba
mixer, freezing, pretrained backbones, bad inputs, vocab resizing, threads. The checks every sequence model passes
(save/load, tuple against dict, hidden states, init, gradient checkpointing, batching) are in
`test_modeling_common.py`."""

import pytest
import torch
from safetensors.torch import save_file

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.configuration_mambaocr import FREEZE_STRATEGIES

from .conftest import run_in_threads, tiny_config_kwargs
from .test_modeling_common import MambaOCRModelTester


@pytest.fixture
def tester():
    return MambaOCRModelTester()


@pytest.mark.slow
def test_stride_patch_keeps_width_and_collapses_height(tester):
    model = MambaOCRForCTC(tester.get_config()).eval()
    features = {}
    model.backbone.body.layer4[-1].register_forward_hook(lambda m, i, o: features.setdefault("layer4", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 200))
    assert features["layer4"].shape[2:] == (1, 50)
    for stride in (2, 8):
        patched = MambaOCRForCTC(tester.get_config(frame_stride=stride)).eval()
        with torch.no_grad():
            assert patched(torch.randn(1, 3, 32, 64)).logits.shape[1] == 64 // stride


@pytest.mark.slow
def test_adapters_start_as_identity(tester):
    config = tester.get_config()
    model = MambaOCRForCTC(config).eval()
    no_adapters = MambaOCRForCTC(tester.get_config(adapter_size=0)).eval()
    no_adapters.backbone.body.load_state_dict(model.backbone.body.state_dict())
    assert len(model.backbone.adapters) == 4 and len(no_adapters.backbone.adapters) == 0
    for adapters in model.backbone.adapters.values():
        for adapter in adapters:
            assert torch.count_nonzero(adapter.up.weight) == 0
    pixel_values = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(model.backbone(pixel_values), no_adapters.backbone(pixel_values), atol=1e-6)
    only_layer4 = MambaOCRForCTC(tester.get_config(adapter_stages=["layer4"]))
    assert list(only_layer4.backbone.adapters) == ["layer4"]


def test_mixer_keeps_mamba_mixer_parameter_names(tester):
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    model = MambaOCRForCTC(tester.get_config())
    ours = dict(model.encoder.layers[0].mixer.named_parameters())
    theirs = dict(
        MambaMixer(
            MambaConfig(hidden_size=32, state_size=4, expand=2, time_step_rank=2, conv_kernel=4), layer_idx=0
        ).named_parameters()
    )
    for name, param in theirs.items():
        assert ours[name].shape == param.shape, name
        if name not in ("in_proj.weight", "out_proj.weight"):  # shared by both directions
            assert ours[name.replace(".", "_reverse.", 1) if "." in name else name + "_reverse"].shape == param.shape


def test_unidirectional_is_causal(tester):
    model = MambaOCRForCTC(tester.get_config(bidirectional=False, adapter_size=0)).eval()
    hidden = torch.randn(1, 10, 32)
    changed = hidden.clone()
    changed[:, 6:] = torch.randn(1, 4, 32)
    with torch.no_grad():
        a, _ = model.encoder(hidden, torch.tensor([10]))
        b, _ = model.encoder(changed, torch.tensor([10]))
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6) and not torch.allclose(a[:, 6:], b[:, 6:])


def test_training_step_finite_loss_and_expected_gradients(tester):
    model = MambaOCRForCTC(tester.get_config())
    model.apply_freeze_strategy("adapters_layer4")
    model.train()
    pixel_values, pixel_mask, labels = tester.prepare_inputs()
    out = model(pixel_values, pixel_mask=pixel_mask, labels=labels)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    for name, param in model.named_parameters():
        frozen = name.startswith("backbone.body.") and not name.startswith("backbone.body.layer4.")
        if frozen:
            assert param.grad is None, name
        elif "adapters" in name and ".down." in name and "layer4" not in name:
            continue  # an adapter's down-projection gets no gradient while its up-projection is still zero
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
    # frozen BatchNorms keep their statistics while the model trains
    assert not model.backbone.body.bn1.training and model.backbone.body.layer4[0].bn1.training
    groups = model.parameter_groups()
    assert groups["backbone.layer1"][0] == 0 and groups["backbone.layer4"][0] == groups["backbone.layer4"][1]


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss(tester):
    model = MambaOCRForCTC(tester.get_config()).train()
    pixel_values, pixel_mask, labels = tester.prepare_inputs()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(pixel_values, pixel_mask=pixel_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("strategy", FREEZE_STRATEGIES)
def test_freeze_strategies(tester, strategy):
    model = MambaOCRForCTC(tester.get_config())
    model.apply_freeze_strategy(strategy)
    groups = model.parameter_groups()
    trains = {name: trainable > 0 for name, (trainable, _) in groups.items()}
    expected_classifier_only = strategy == "head_only"
    assert trains["classifier"]
    assert trains["encoder"] == (not expected_classifier_only)
    assert trains["backbone.stem"] == (strategy == "full")
    assert trains["backbone.layer4"] == (strategy in ("full", "adapters_layer4"))
    assert trains["backbone.adapters"] == (strategy in ("full", "adapters_layer4", "adapters"))
    with pytest.raises(ValueError, match="Unknown freeze strategy"):
        model.apply_freeze_strategy("everything")


@pytest.mark.slow
def test_default_model_runs_end_to_end_with_default_processor():
    from PIL import Image

    model = MambaOCRForCTC(MambaOCRConfig()).eval()
    processor = MambaOCRProcessor.from_defaults()
    inputs = processor(images=[Image.new("RGB", (120, 40), "white"), Image.new("L", (50, 32))], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == (2, 24, 37)
    assert len(processor.batch_decode(out.logits)) == 2


@pytest.mark.slow
def test_pretrained_backbone_from_local_file(tester, tmp_path):
    import timm

    reference = timm.create_model("resnet10t", pretrained=False, num_classes=0, global_pool="")
    path = tmp_path / "resnet10t.safetensors"
    save_file(reference.state_dict(), str(path))
    model = MambaOCRForCTC(tester.get_config(use_pretrained_backbone=True, backbone_weights_path=str(path)))
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.backbone.body.state_dict()[name], tensor), name
    # a checkpoint with use_pretrained_backbone=True loads its own weights, without fetching ImageNet ones
    model.config.backbone_weights_path = str(tmp_path / "gone.safetensors")
    model.save_pretrained(tmp_path / "ckpt")
    MambaOCRForCTC.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="backbone_weights_path"):
        MambaOCRForCTC(tester.get_config(use_pretrained_backbone=True, backbone_weights_path=str(tmp_path / "x.pt")))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv1.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(ValueError, match="do not fit"):
        MambaOCRForCTC(tester.get_config(use_pretrained_backbone=True, backbone_weights_path=str(wrong)))


def test_pretrained_backbone_offline_error_says_how_to_pass_local_weights(tester, monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return original(*args, **kwargs)

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(OSError, match="backbone_weights_path"):
        MambaOCRForCTC(tester.get_config(use_pretrained_backbone=True))


@pytest.mark.slow
def test_bad_inputs(tester):
    model = MambaOCRForCTC(tester.get_config()).eval()
    pixel_values, pixel_mask, labels = tester.prepare_inputs()
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match="pixel_values` must be"):
        model(torch.randn(3, 32, 64))
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 3, 30, 64))
    with pytest.raises(ValueError, match="empty"):
        model(torch.randn(1, 3, 32, 0))
    empty_mask = pixel_mask.clone()
    empty_mask[2] = 0
    with pytest.raises(ValueError, match=r"Images \[2\] .* zero-width"):
        model(pixel_values, pixel_mask=empty_mask)
    with pytest.raises(ValueError, match="pixel_mask"):
        model(pixel_values, pixel_mask=pixel_mask[:, :10])
    too_long = labels.clone()
    too_long[2] = torch.tensor([11, 12, 13, 14])  # 4 characters, 3 frames
    with pytest.raises(ValueError, match=r"samples \[2\] are longer than their images allow"):
        model(pixel_values, pixel_mask=pixel_mask, labels=too_long)
    repeats = labels.clone()
    repeats[2] = torch.tensor([11, 11, -100, -100])  # a repeat needs a blank between: 3 frames is enough
    model(pixel_values, pixel_mask=pixel_mask, labels=repeats)
    repeats[2] = torch.tensor([11, 11, 11, -100])  # 5 frames needed
    with pytest.raises(ValueError, match="needs 5 frames"):
        model(pixel_values, pixel_mask=pixel_mask, labels=repeats)
    out_of_vocab = labels.clone()
    out_of_vocab[0, 0] = 37
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(pixel_values, pixel_mask=pixel_mask, labels=out_of_vocab)
    blank = labels.clone()
    blank[0, 0] = 0
    with pytest.raises(ValueError, match="blank"):
        model(pixel_values, pixel_mask=pixel_mask, labels=blank)


def test_checkpoint_whose_vocab_does_not_match_its_head(tester, tmp_path):
    from mambaocr_hf import MambaOCRTokenizer

    model = MambaOCRForCTC(tester.get_config())
    model.save_pretrained(tmp_path)
    MambaOCRTokenizer(charset="printable").save_pretrained(tmp_path)  # 95 entries, head has 37
    with pytest.raises(ValueError, match=r"vocab.json\) has 95 entries but the model's CTC head has 37"):
        MambaOCRForCTC.from_pretrained(tmp_path)


@pytest.mark.slow
def test_resize_vocab_keeps_existing_rows(tester):
    model = MambaOCRForCTC(tester.get_config()).eval()
    pixel_values = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        before = model(pixel_values).logits
        model.resize_vocab(40)
        after = model(pixel_values).logits
    assert after.shape[-1] == 40 and model.config.vocab_size == 40
    assert torch.allclose(before, after[..., :37], atol=1e-6)


@pytest.mark.slow
def test_checkpointed_backward_after_another_forward(tester):
    """A checkpointed block recomputed in backward uses its own forward's mask, not the latest forward's."""
    pixel_values, pixel_mask, labels = tester.prepare_inputs()
    wide = torch.randn(3, 3, 32, 128)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = MambaOCRForCTC(tester.get_config()).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        loss = model(pixel_values, pixel_mask=pixel_mask, labels=labels).loss
        model(wide)  # another forward before the backward
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


@pytest.mark.parametrize("sequence_model", ["bilstm", "bilstm_residual"])
def test_lstm_encoders_need_an_even_hidden_size(sequence_model):
    """Each direction gets half the width: an odd one is refused with the reason, not a shape error in forward."""
    config = MambaOCRConfig(**tiny_config_kwargs(sequence_model=sequence_model, hidden_size=33))
    with pytest.raises(ValueError, match=f"{sequence_model} sequence model needs an even `hidden_size`, got 33"):
        MambaOCRForCTC(config)


@pytest.mark.parametrize(("num_layers", "bias"), [(1, True), (2, True), (2, False)])
def test_lstm_reads_each_sequence_as_packed(num_layers, bias):
    """The LSTM encoders run unpacked (for oneDNN's fused kernel) but compute what `nn.LSTM` computes on the packed
    sequences: each direction sees only its image's valid frames, the reverse one from the last valid frame; the
    gradients are the same, and padding frames come back as zeros."""
    from mambaocr_hf.modeling_mambaocr import _run_lstm

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, num_layers=num_layers, bidirectional=True, batch_first=True, bias=bias)
    hidden = torch.randn(4, 9, 6, requires_grad=True)
    lengths = torch.tensor([9, 3, 7, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
    expected = torch.nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=9)[0]
    output = _run_lstm(lstm, hidden, lengths)
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)
    assert torch.equal(output[1, 3:], torch.zeros(6, 10)) and torch.equal(output[3, 1:], torch.zeros(8, 10))
    params = [hidden, *lstm.parameters()]
    weights = torch.randn_like(expected)  # a loss that weighs every frame and feature differently
    for got, want in zip(
        torch.autograd.grad((output * weights).sum(), params), torch.autograd.grad((expected * weights).sum(), params)
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_residual_bilstm_has_the_mamba_encoders_structure():
    """`bilstm_residual` swaps only the mixer: one single-layer BiLSTM per pre-norm residual block, a final norm, and
    module names that the PEFT helpers' `encoder_norms` and per-block checkpointing find as they do for Mamba."""
    mamba = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(num_hidden_layers=3)))
    lstm = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(num_hidden_layers=3, sequence_model="bilstm_residual")))
    assert len(lstm.encoder.layers) == len(mamba.encoder.layers) == 3
    norms = sorted(name for name, _ in lstm.encoder.named_modules() if name.endswith("norm") or name == "norm_f")
    assert norms == sorted(
        name for name, _ in mamba.encoder.named_modules() if name.endswith("norm") or name == "norm_f"
    )
    for block in lstm.encoder.layers:
        assert block.lstm.num_layers == 1 and block.lstm.bidirectional and block.lstm.hidden_size == 16
    # a block adds its LSTM's output to its input: with the LSTM silenced the encoder is the final norm alone
    hidden = torch.randn(2, 7, 32)
    for block in lstm.encoder.layers:
        for param in block.lstm.parameters():
            param.data.zero_()
    with torch.no_grad():
        out, all_hidden = lstm.encoder(hidden, torch.tensor([7, 4]), output_hidden_states=True)
    assert len(all_hidden) == 4 and all(torch.equal(h, hidden) for h in all_hidden)
    torch.testing.assert_close(out, lstm.encoder.norm_f(hidden))


def test_backbones_the_stride_patch_cannot_handle_are_refused():
    with pytest.raises(ValueError, match="resnetblur18"):
        MambaOCRForCTC(MambaOCRConfig(backbone="resnetblur18", hidden_size=32))


def test_backbone_kwargs_reach_timm(tester):
    def last_norm_weights(model):
        return torch.cat([block.bn2.weight for block in model.backbone.body.layer1])

    assert torch.count_nonzero(last_norm_weights(MambaOCRForCTC(tester.get_config()))) == 0  # timm's default
    unzeroed = MambaOCRForCTC(tester.get_config(backbone_kwargs={"zero_init_last": False}))
    assert torch.all(last_norm_weights(unzeroed) == 1)
    with pytest.raises(ValueError, match="does not accept `backbone_kwargs`"):
        MambaOCRForCTC(tester.get_config(backbone_kwargs={"zero_init_lats": False}))


def test_from_pretrained_with_loading_info_and_attention_mask_error(tester, tmp_path):
    model = MambaOCRForCTC(tester.get_config())
    model.save_pretrained(tmp_path)
    loaded, info = MambaOCRForCTC.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, MambaOCRForCTC) and not info["missing_keys"]
    with pytest.raises(TypeError, match="pixel_mask"):
        model(torch.randn(1, 3, 32, 64), attention_mask=torch.ones(1, 64))


def test_grayscale_model_reads_one_channel_and_adapts_rgb_weights(tmp_path):
    """`num_channels=1` builds a one-channel backbone; RGB ImageNet weights are summed into its first convolution, as
    timm does when it loads pretrained weights for `in_chans=1`."""
    import timm
    from safetensors.torch import save_file

    from mambaocr_hf import MambaOCRImageProcessor

    rgb = timm.create_model("resnet10t", num_classes=0, global_pool="")
    save_file(rgb.state_dict(), tmp_path / "rgb.safetensors")
    config = MambaOCRConfig(**tiny_config_kwargs(num_channels=1, max_width=256), use_pretrained_backbone=True,
                            backbone_weights_path=str(tmp_path / "rgb.safetensors"))  # fmt: skip
    model = MambaOCRForCTC(config).eval()
    first = model.backbone.body.conv1[0].weight
    assert first.shape[1] == 1 and torch.allclose(first[:, 0], rgb.conv1[0].weight.sum(dim=1))
    processor = MambaOCRImageProcessor.for_model_config(config)
    assert (processor.num_channels, processor.width_multiple, processor.max_width) == (1, 4, 256)
    inputs = processor(torch.rand(3, 32, 100), return_tensors="pt")
    with torch.no_grad():
        assert model(**inputs).logits.shape == (1, 25, config.vocab_size)


@pytest.mark.slow
def test_padded_widths_off_the_frame_stride_are_warned_about(caplog):
    """A frame_stride=8 model fed widths rounded to 4 (the default processor's): padding then changes an image's last
    frame, and the model says so once; widths from `for_model_config` read the same alone and padded."""
    from mambaocr_hf import MambaOCRImageProcessor

    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(frame_stride=8))).eval()
    images = [torch.rand(3, 32, 100), torch.rand(3, 32, 37)]
    for processor, warned in ((MambaOCRImageProcessor.for_model_config(model.config), False),
                              (MambaOCRImageProcessor(), True)):  # fmt: skip
        caplog.clear()
        inputs = processor(images, return_tensors="pt")
        with caplog.at_level("WARNING"), torch.no_grad():
            padded = model(**inputs)
            alone = model(**processor(images[1:], return_tensors="pt"))
        assert ("not multiples of frame_stride=8" in caplog.text) == warned
        frames = int(padded.frame_lengths[1])
        if not warned:
            torch.testing.assert_close(padded.logits[1, :frames], alone.logits[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["fused", "modules"])
def test_one_model_called_from_two_threads(path):
    """Issue 20 item 1: the padding of a call travels with the call, so two threads calling one model on padded
    batches of mixed widths and sizes get exactly what sequential calls give (before, one thread's padding mask was
    applied to the other's batch: shape errors and wrong logits). `fused` runs the folded CPU backbone and its
    shared weight cache, `modules` the module path with its padding hooks (autograd on)."""
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(num_hidden_layers=1))).eval()
    widths = [(24, 64), (64,), (16, 64, 40), (48, 8), (32,), (8, 64, 64)]
    batches = []
    for index in range(36):
        sizes = widths[index % len(widths)]
        width = max(sizes)
        pixel_mask = (torch.arange(width)[None, :] < torch.tensor(sizes)[:, None]).long()
        batches.append({"pixel_values": torch.randn(len(sizes), 3, 32, width) * pixel_mask[:, None, None, :],
                        "pixel_mask": pixel_mask})  # fmt: skip
    grad = path == "modules"

    def logits(batch):
        with torch.set_grad_enabled(grad):
            return model(**batch).logits.detach()

    expected = [logits(batch) for batch in batches]
    results, errors = run_in_threads(logits, batches)
    assert not errors, f"{len(errors)} calls raised, e.g. {errors[0]!r}"
    wrong = [
        i
        for i, out in results.items()
        if out.shape != expected[i].shape or not torch.allclose(out, expected[i], rtol=1e-4, atol=1e-5)
    ]
    assert not wrong, f"{len(wrong)} of {len(batches)} calls differ from sequential ones, e.g. batch {wrong[0]}"
