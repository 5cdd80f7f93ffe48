import pytest

from mambaocr_hf import MambaOCRConfig, MambaOCRImageProcessor, MambaOCRTokenizer


def test_defaults_describe_one_model():
    config = MambaOCRConfig()
    tokenizer = MambaOCRTokenizer()
    image_processor = MambaOCRImageProcessor()
    assert config.vocab_size == len(tokenizer) == 37
    assert config.blank_id == tokenizer.blank_token_id == 0
    assert config.image_height == image_processor.image_height == 32
    assert config.max_width == image_processor.max_width
    assert config.frame_stride == image_processor.width_multiple
    assert config.backbone == "resnet34" and config.sequence_model == "mamba" and config.bidirectional


def test_derived_values():
    config = MambaOCRConfig(hidden_size=192, expand=2)
    assert config.intermediate_size == 384
    assert config.time_step_rank == 12  # ceil(192 / 16)
    assert MambaOCRConfig(time_step_rank=5).time_step_rank == 5
    config.expand = 3  # derived, so it follows
    assert config.intermediate_size == 576
    with pytest.raises(ValueError, match="set `expand`"):
        config.intermediate_size = 100


def test_from_pretrained_overrides_are_derived_and_validated(tmp_path):
    """`from_pretrained(path, field=value)` goes through __init__: derived fields follow, bad values are refused."""
    from mambaocr_hf import MambaOCRForCTC

    MambaOCRConfig(hidden_size=32, expand=2).save_pretrained(tmp_path)
    assert MambaOCRConfig.from_pretrained(tmp_path, expand=3).intermediate_size == 96
    config, unused = MambaOCRConfig.from_pretrained(tmp_path, expand=3, not_a_field=1, return_unused_kwargs=True)
    assert config.expand == 3 and unused == {"not_a_field": 1}
    with pytest.raises(ValueError, match="scan_implementation"):
        MambaOCRConfig.from_pretrained(tmp_path, scan_implementation="fast")
    config = MambaOCRConfig(backbone="resnet10t", hidden_size=32)
    config.sequence_model = "lstm"  # set after the config was built: the model checks it
    with pytest.raises(ValueError, match="sequence_model"):
        MambaOCRForCTC(config)


def test_round_trip(tmp_path):
    config = MambaOCRConfig(
        hidden_size=64,
        sequence_model="bilstm",
        adapter_stages=["layer4"],
        vocab_size=95,
        backbone_kwargs={"zero_init_last": False},
    )
    config.save_pretrained(tmp_path)
    loaded = MambaOCRConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backbone="vit_base_patch16_224"), "timm ResNet"),
        (dict(frame_stride=3), "frame_stride"),
        (dict(adapter_stages=["layer5"]), "adapter_stages"),
        (dict(adapter_size=-1), "adapter_size"),
        (dict(sequence_model="gru"), "sequence_model"),
        (dict(sequence_model="transformer", hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(blank_id=37), "blank_id"),
        (dict(ctc_loss_reduction="avg"), "ctc_loss_reduction"),
        (dict(image_height=48), "multiple of 32"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(state_size=2.5), "state_size"),
        (dict(time_step_min=0.5, time_step_max=0.1), "time_step_min"),
        (dict(max_width=2), "max_width"),
        (dict(backbone_kwargs="zero_init_last=False"), "backbone_kwargs"),
        (dict(backbone_kwargs={"pretrained": True}), "use_pretrained_backbone"),
        (dict(sequence_model="transformer", num_attention_heads=0), "num_attention_heads"),
        (dict(sequence_model="bilstm", num_hidden_layers=0), "num_hidden_layers"),
        (dict(sequence_model="bilstm_residual", num_hidden_layers=0), "num_hidden_layers"),
        (dict(layer_norm_epsilon=-1e-5), "layer_norm_epsilon"),
    ],
)
def test_validation_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MambaOCRConfig(**kwargs)


def test_presets():
    small = MambaOCRConfig.from_preset("small", vocab_size=95)
    assert small.backbone == "resnet18" and small.vocab_size == 95
    assert MambaOCRConfig.from_preset("base").to_dict() == MambaOCRConfig().to_dict()
    # the CPU demo's variant is what its JSON config spelt as a string of overrides before it had a name
    narrow = MambaOCRConfig.from_preset("small-narrow", vocab_size=95)
    spelt_out = {"backbone_kwargs": {"zero_init_last": False, "channels": [64, 128, 256, 256]}, "hidden_dropout": 0.0}
    assert narrow.to_dict() == MambaOCRConfig.from_preset("small", vocab_size=95, **spelt_out).to_dict()
    narrow.backbone_kwargs["channels"][3] = 512  # a config's dict is its own, not the registry's
    assert MambaOCRConfig.from_preset("small-narrow").backbone_kwargs["channels"][3] == 256
    with pytest.raises(ValueError, match="Unknown preset"):
        MambaOCRConfig.from_preset("huge")
    # a misspelt override is refused, not stored as an attribute beside the default size
    with pytest.raises(ValueError, match="'hiden_size' \\(did you mean 'hidden_size'\\?\\)"):
        MambaOCRConfig.from_preset("small", hiden_size=64)
