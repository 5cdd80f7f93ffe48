"""PEFT fine-tuning: LoRA on the Mamba projections and the backbone, modules_to_save, adapter files, merging, charset
extension, several adapters, bad adapters, and the encoder initialised from a Mamba language model. Tiny models."""

import json
import os

import pytest
import torch
from transformers import AutoModel, MambaConfig, MambaForCausalLM, pipeline
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

peft = pytest.importorskip("peft")

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint  # noqa: E402
from mambaocr_hf.image_processing_mambaocr import MambaOCRImageProcessor  # noqa: E402
from mambaocr_hf.mamba_lm_init import config_from_mamba_lm, init_encoder_from_mamba_lm  # noqa: E402
from mambaocr_hf.peft_utils import (  # noqa: E402
    build_lora_config,
    check_adapter_compatibility,
    extend_charset,
    find_new_characters,
    get_peft_model,
    load_adapter,
    load_adapter_processor,
    peft_parameter_table,
    save_adapter,
)

from .conftest import tiny_config_kwargs  # noqa: E402


def _model(**overrides) -> MambaOCRForCTC:
    return MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128, **overrides))).eval()


def _processor() -> MambaOCRProcessor:
    return MambaOCRProcessor(
        image_processor=MambaOCRImageProcessor(max_width=128), tokenizer=MambaOCRProcessor.from_defaults().tokenizer
    )


def _inputs():
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(3, 3, 32, 64, generator=generator)
    pixel_mask = torch.ones(3, 64, dtype=torch.long)
    pixel_mask[1, 40:] = 0  # one padded image: the LoRA branch must not see its padding either
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


@torch.no_grad()
def _perturb_lora(peft_model, scale: float = 0.05, seed: int = 0) -> None:
    """Stand-in for training: random LoRA B matrices (they start at zero) and nudged `modules_to_save` copies."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name or (".modules_to_save." in name and param.requires_grad):
            param.add_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base")
    save_checkpoint(_model(), _processor(), path)
    return path


def _logits(model, inputs=None):
    with torch.no_grad():
        return model(**(inputs or _inputs())).logits


@pytest.mark.slow
def test_lora_step_changes_only_the_intended_parameters():
    model = _model()
    peft_model = get_peft_model(model)
    peft_model.train()
    assert peft_model.peft_config["default"].r == 8
    table = peft_parameter_table(peft_model)
    assert "backbone.adapters" in table and "LoRA" in table and "% trainable" in table
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".modules_to_save." in n for n in trainable)
    # the adapters, projection and classifier train fully; LoRA sits on the Mamba projections and layer4
    assert any(".adapters.layer1.0.modules_to_save." in n for n in trainable)
    assert any("classifier.modules_to_save." in n for n in trainable)
    assert any("x_proj_reverse.lora_A" in n for n in trainable) and any(
        "layer4.0.conv1.lora_A" in n for n in trainable
    )
    before = {n: t.clone() for n, t in peft_model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([[5, 6, 7], [8, 9, -100], [10, -100, -100]])
    for _ in range(2):  # LoRA A only gets a gradient once B has moved
        optimizer.zero_grad()
        peft_model(**_inputs(), labels=labels).loss.backward()
        optimizer.step()
    changed = {n for n, t in peft_model.state_dict().items() if not torch.equal(t, before[n])}
    # only trainable tensors changed, plus the running statistics of BatchNorms inside trained copies of blocks
    assert changed and all(n in trainable or ".modules_to_save." in n for n in changed), changed - trainable
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    frozen_bn = [n for n in before if "bn1.running_mean" in n and ".modules_to_save." not in n]
    assert frozen_bn and not (set(frozen_bn) & changed)  # frozen BatchNorms keep their statistics


@pytest.mark.slow
@pytest.mark.parametrize("target", ["x_proj", "dt_proj", "in_proj", "out_proj"])
def test_lora_on_each_mamba_projection_counts_and_merges(target):
    """The mixer reads x_proj / dt_proj weights directly on its fast path: a LoRA there must still change outputs.
    (Larger weights than the default init, so that the scan's contribution is well above rounding.)"""
    model = _model(initializer_range=0.3)
    reference = _logits(model)
    config = build_lora_config(model, mamba_targets=(target,), backbone_lora_stages=(), modules_to_save=())
    assert {name.rsplit(".", 1)[-1] for name in config.target_modules} <= {target, f"{target}_reverse"}
    peft_model = get_peft_model(model, config).eval()
    # LoRA B starts at zero: the identity (up to rounding: the wrapped layers run their own forward)
    torch.testing.assert_close(_logits(peft_model), reference, atol=1e-5, rtol=1e-5)
    _perturb_lora(peft_model, scale=0.2)
    tuned = _logits(peft_model)
    assert (tuned - reference).abs().max() > 1e-2
    merged = peft_model.merge_and_unload()
    assert type(merged.encoder.layers[0].mixer.x_proj) is torch.nn.Linear
    torch.testing.assert_close(_logits(merged), tuned, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_fully_trained_conv1d_counts():
    """`conv1d` cannot take LoRA (depthwise) but can train fully; the copy PEFT trains must be the one used."""
    model = _model(initializer_range=0.3)
    reference = _logits(model)
    with pytest.raises(ValueError, match="depthwise"):
        build_lora_config(model, mamba_targets=("conv1d",))
    peft_model = get_peft_model(model, modules_to_save=("conv1d", "conv1d_reverse"), backbone_lora_stages=()).eval()
    _perturb_lora(peft_model, scale=0.2)
    tuned = _logits(peft_model)
    assert (tuned - reference).abs().max() > 1e-2
    torch.testing.assert_close(_logits(peft_model.merge_and_unload()), tuned, atol=1e-4, rtol=0)


def test_backbone_lora_keeps_padding_out():
    """LoRA convolutions read the block input beside the masked base layer: they are masked too."""
    peft_model = get_peft_model(_model(), mamba_targets=(), backbone_lora_stages=("layer3", "layer4")).eval()
    _perturb_lora(peft_model, scale=0.2)
    inputs = _inputs()
    batched = _logits(peft_model, inputs)
    alone = _logits(peft_model, {"pixel_values": inputs["pixel_values"][1:2, :, :, :40]})
    torch.testing.assert_close(batched[1, :10], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_save_load_merge_and_pipeline(base_dir, tmp_path):
    base = AutoModel.from_pretrained(base_dir).eval()
    peft_model = get_peft_model(base).eval()
    _perturb_lora(peft_model)
    tuned = _logits(peft_model)
    adapter_dir = tmp_path / "adapter"
    save_adapter(peft_model, adapter_dir, processor=_processor(), base_model=str(base_dir), metrics={"cer": 0.25})
    files = set(os.listdir(adapter_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "mambaocr_adapter.json"} <= files
    assert "model.safetensors" not in files and "vocab.json" not in files  # the charset is the base's
    card = (adapter_dir / "README.md").read_text()
    assert (
        f"base_model: {json.dumps(str(base_dir))}" in card
        and "library_name: peft" in card
        and "| cer | 0.2500 |" in card
    )
    # small: at most 10% of the full checkpoint
    assert os.path.getsize(adapter_dir / "adapter_model.safetensors") <= 0.1 * os.path.getsize(
        base_dir / "model.safetensors"
    )
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)

    # plain PEFT loading reproduces the fine-tuned predictions exactly
    loaded = peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), adapter_dir).eval()
    assert torch.equal(_logits(loaded), tuned)
    assert torch.equal(_logits(load_adapter(str(base_dir), adapter_dir).eval()), tuned)
    # transformers' own adapter loading (what `pipeline(model=adapter_dir)` uses) too
    assert torch.equal(_logits(AutoModel.from_pretrained(adapter_dir).eval()), tuned)

    merged = loaded.merge_and_unload()
    assert type(merged) is MambaOCRForCTC
    torch.testing.assert_close(_logits(merged), tuned, atol=1e-4, rtol=0)
    merged_dir = tmp_path / "merged"
    save_checkpoint(merged, load_adapter_processor(adapter_dir), merged_dir)
    torch.testing.assert_close(_logits(AutoModel.from_pretrained(merged_dir).eval()), tuned, atol=1e-4, rtol=0)

    reader = pipeline("scene-text-recognition", model=str(adapter_dir))
    assert isinstance(reader.model, peft.PeftModel) or hasattr(reader.model, "peft_config")
    image = torch.rand(3, 32, 64).mul(255).byte().permute(1, 2, 0).numpy()
    from PIL import Image

    result = reader(Image.fromarray(image))
    assert isinstance((result[0] if isinstance(result, list) else result)["generated_text"], str)


@pytest.mark.slow
def test_charset_extension_keeps_old_predictions(base_dir, tmp_path):
    processor = _processor()
    assert find_new_characters(["Hello, World!", "café"], processor.tokenizer) == ", !"  # case and accents fold
    model = AutoModel.from_pretrained(base_dir).eval()
    reference = _logits(model)
    old_tokenizer = processor.tokenizer
    extend_charset(model, processor, "!?")
    assert len(processor.tokenizer) == 39 == model.config.vocab_size
    assert processor.tokenizer.convert_tokens_to_ids(list("abc")) == old_tokenizer.convert_tokens_to_ids(list("abc"))
    extended = _logits(model)
    assert torch.equal(extended[..., :37], reference)  # old rows unchanged
    assert torch.equal(extended.argmax(-1), reference.argmax(-1))  # so greedy decoding is unchanged
    with pytest.raises(ValueError, match="already in the charset"):
        extend_charset(model, processor, "a")

    # the grown head must train and be saved with the adapter
    with pytest.raises(ValueError, match="keep 'classifier' in `modules_to_save`"):
        build_lora_config(model, modules_to_save=("adapters", "projection"))
    peft_model = get_peft_model(model).train()
    labels = torch.tensor(processor.tokenizer(["a!", "b?", "c"], padding=True)["input_ids"])
    labels[labels == 0] = -100
    peft_model(**_inputs(), labels=labels).loss.backward()
    head = peft_model.base_model.model.classifier.modules_to_save["default"]
    assert head.weight.grad[37:].abs().sum() > 0  # the new rows train

    _perturb_lora(peft_model.eval())
    tuned = _logits(peft_model)
    adapter_dir = tmp_path / "extended"
    # base_vocab_size defaults to the size extend_charset grew the head from
    save_adapter(peft_model, adapter_dir, processor=processor, base_model=str(base_dir))
    assert json.loads((adapter_dir / "mambaocr_adapter.json").read_text())["base_vocab_size"] == 37
    assert (adapter_dir / "vocab.json").is_file() and len(load_adapter_processor(adapter_dir).tokenizer) == 39
    # the base has 37 classes: plain loading fails clearly; load_adapter grows the head as training did
    with pytest.raises(ValueError, match="another charset|extended"):
        peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), adapter_dir)
    with pytest.raises(ValueError, match="extended the base's charset"):
        check_adapter_compatibility(AutoModel.from_pretrained(base_dir), adapter_dir)
    assert torch.equal(_logits(load_adapter(str(base_dir), adapter_dir).eval()), tuned)
    # transformers' own routes grow the base's head too, and the pipeline takes the adapter's processor
    assert torch.equal(_logits(AutoModel.from_pretrained(adapter_dir).eval()), tuned)
    reader = pipeline("scene-text-recognition", model=str(adapter_dir))
    assert len(reader.processor.tokenizer) == 39
    image = torch.rand(3, 32, 64).mul(255).byte().permute(1, 2, 0).numpy()
    assert isinstance(reader(image)["generated_text"], str)


@pytest.mark.slow
def test_adapters_for_another_base_or_vocab_are_refused(base_dir, tmp_path):
    other = get_peft_model(_model(hidden_size=48))
    save_adapter(other, tmp_path / "wide", base_model="elsewhere")
    with pytest.raises(ValueError, match="different base architecture.*hidden_size"):
        load_adapter(str(base_dir), tmp_path / "wide")

    digits = get_peft_model(_model(vocab_size=11))
    save_adapter(digits, tmp_path / "digits", base_model="elsewhere")
    with pytest.raises(ValueError, match="11 classes but the model has 37.*another charset"):
        load_adapter(str(base_dir), tmp_path / "digits")

    same_shape = get_peft_model(_model())  # same architecture, other weights: loads, with a warning
    save_adapter(same_shape, tmp_path / "other_weights", base_model="elsewhere")
    logger = logging.get_logger("mambaocr_hf.model_loading")  # the one check every loading route shares
    with CaptureLogger(logger) as captured:
        check_adapter_compatibility(AutoModel.from_pretrained(base_dir), tmp_path / "other_weights")
    assert "base weights differ" in captured.out
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter folder"):
        load_adapter(str(base_dir), base_dir)


@pytest.mark.slow
def test_several_adapters_on_one_base(base_dir, tmp_path):
    outputs = {}
    for seed, name in enumerate(("signs", "receipts")):
        peft_model = get_peft_model(AutoModel.from_pretrained(base_dir)).eval()
        _perturb_lora(peft_model, seed=seed)
        outputs[name] = _logits(peft_model)
        save_adapter(peft_model, tmp_path / name, base_model=str(base_dir))
    model = load_adapter(str(base_dir), tmp_path / "signs", adapter_name="signs")
    model = load_adapter(model, tmp_path / "receipts", adapter_name="receipts").eval()
    assert set(model.peft_config) == {"signs", "receipts"}
    for name in ("signs", "receipts", "signs"):
        model.set_adapter(name)
        assert torch.equal(_logits(model), outputs[name])
    with model.disable_adapter():  # the wrapped layers run the eager scan, the plain base model the CPU kernels
        torch.testing.assert_close(_logits(model), _logits(AutoModel.from_pretrained(base_dir).eval()))


@pytest.mark.slow
def test_encoder_from_a_tiny_mamba_language_model(tmp_path):
    lm_config = MambaConfig(
        vocab_size=64, hidden_size=32, state_size=4, num_hidden_layers=3, expand=2, time_step_rank=4
    )
    torch.manual_seed(0)
    MambaForCausalLM(lm_config).save_pretrained(tmp_path / "lm")
    lm = MambaForCausalLM.from_pretrained(tmp_path / "lm").eval()
    config = config_from_mamba_lm(
        tmp_path / "lm", num_layers=2, backbone="resnet10t", adapter_size=8, bidirectional=False, max_width=128
    )
    assert (config.hidden_size, config.intermediate_size, config.time_step_rank) == (32, 64, 4)
    model = MambaOCRForCTC(config).eval()
    loaded = init_encoder_from_mamba_lm(model, tmp_path / "lm")
    assert "encoder.layers.1.mixer.dt_proj.bias" in loaded and "encoder.norm_f.weight" in loaded
    # one to one: our block computes what the LM's block computes
    hidden = torch.randn(2, 10, 32)
    with torch.no_grad():
        ours = model.encoder.layers[1](hidden, torch.tensor([10, 10]))
        theirs = lm.backbone.layers[1](hidden)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)

    # the recipe: bidirectional, reverse direction copied, LoRA on the projections, layer4 etc. trained fully
    model = MambaOCRForCTC(config_from_mamba_lm(lm, num_layers=2, backbone="resnet10t", adapter_size=8))
    init_encoder_from_mamba_lm(model, lm, reverse_init="copy")
    mixer = model.encoder.layers[0].mixer
    assert torch.equal(mixer.x_proj_reverse.weight, mixer.x_proj.weight) and torch.equal(
        mixer.A_log_reverse, mixer.A_log
    )
    peft_model = get_peft_model(model, backbone_lora_stages=(), full_stages=("layer4",))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("layer4.0.modules_to_save" in n for n in trainable) and any("in_proj.lora_A" in n for n in trainable)
    with pytest.raises(ValueError, match="num_layers"):
        config_from_mamba_lm(lm, num_layers=5)
    with pytest.raises(ValueError, match="shape"):
        init_encoder_from_mamba_lm(_model(bidirectional=False, num_hidden_layers=2, hidden_size=48), lm)


def test_finetune_script_preset_parses(monkeypatch):
    import sys
    from pathlib import Path

    from transformers import HfArgumentParser, TrainingArguments

    from mambaocr_hf.training import parse_args_with_preset

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    monkeypatch.syspath_prepend(str(scripts))
    import finetune_lora

    parser = HfArgumentParser(
        (finetune_lora.ModelArguments, finetune_lora.PeftArguments, finetune_lora.DataArguments, TrainingArguments)
    )
    args = [str(scripts / "configs" / "finetune_lora.json"), "--lora_r", "4", "--output_dir", "x"]
    model_args, peft_args, data_args, training_args = parse_args_with_preset(parser, args)
    assert peft_args.lora_r == 4 and peft_args.use_peft and data_args.validation_size == 2000  # flags win
    assert finetune_lora._names(peft_args.modules_to_save) == ("adapters", "projection", "classifier")
    assert training_args.learning_rate == 1e-3 and model_args.model_name_or_path == "runs/demo_cpu"
    assert "finetune_lora" in sys.modules


@pytest.mark.slow
def test_finetune_script_end_to_end(base_dir, tmp_path):
    """The user's path: a folder of crops with labels.tsv (with a character the base lacks) → an adapter folder with
    its card and metrics, plus a merged checkpoint that loads as a plain model."""
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image, ImageDraw

    data = tmp_path / "crops"
    data.mkdir()
    rows = []
    # the last crop (200×32) fits the base's 128 px processor (ratio ≤ 8) but not --max_width 64 (ratio ≤ 4)
    for index, word in enumerate(["abc", "hello!", "42", "mamba", "ocr!", "test", "x" * 12]):
        image = Image.new("RGB", (16 * len(word) + 8, 32), "white")
        ImageDraw.Draw(image).text((4, 8), word, fill="black")
        image.save(data / f"{index}.png")
        rows.append(f"{index}.png\t{word}")
    (data / "labels.tsv").write_text("\n".join(rows) + "\n")
    out, merged = tmp_path / "adapter", tmp_path / "merged"
    script = Path(__file__).resolve().parent.parent / "scripts" / "finetune_lora.py"
    result = subprocess.run(
        [sys.executable, str(script), "--model_name_or_path", str(base_dir), "--dataset", str(data),
         "--validation_size", "2", "--max_eval_samples", "2", "--max_steps", "2", "--per_device_train_batch_size",
         "2", "--per_device_eval_batch_size", "2", "--bf16", "False", "--dataloader_num_workers", "0",
         "--report_to", "none", "--extend_charset", "auto", "--output_dir", str(out), "--merge_and_save",
         str(merged), "--max_width", "64"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert "trainable params" in log  # PEFT's print_trainable_parameters()
    assert "(200x32, ratio 6.25 outside" in log  # trained at --max_width 64
    # what is saved reads lines as wide as the base did
    assert json.loads((out / "processor_config.json").read_text())["image_processor"]["max_width"] == 128
    assert json.loads((out / "train_results.json").read_text())["nonfinite_steps"] == 0
    files = set(os.listdir(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "vocab.json"} <= files
    assert "!" in json.loads((out / "vocab.json").read_text())  # the charset grew
    assert os.path.getsize(out / "adapter_model.safetensors") <= 0.1 * os.path.getsize(base_dir / "model.safetensors")
    model = AutoModel.from_pretrained(merged)
    assert type(model) is MambaOCRForCTC and model.config.vocab_size == 38
    assert MambaOCRProcessor.from_pretrained(merged).tokenizer.convert_tokens_to_ids("!") == 37


@pytest.mark.slow
@pytest.mark.parametrize("route", ["load_adapter", "peft", "auto_model", "pipeline"])
def test_every_route_warns_about_an_adapter_from_another_base(base_dir, tmp_path, caplog, route):
    """Issue 20 item 9: an adapter names its base (`base_model_name_or_path`), but that base's weights are not the
    ones it was trained on (same shapes: say the base was retrained and saved over). Every way to load it warns,
    not only `load_adapter`; an adapter on its own base loads without the warning."""
    torch.manual_seed(1)
    trained_on = _model()  # another base of the same shape
    for name, base in (("other", trained_on), ("own", AutoModel.from_pretrained(base_dir))):
        peft_model = get_peft_model(base).eval()
        _perturb_lora(peft_model)
        save_adapter(peft_model, tmp_path / name, base_model=str(base_dir))
    loaders = {
        "load_adapter": lambda adapter: load_adapter(str(base_dir), adapter),
        "peft": lambda adapter: peft.PeftModel.from_pretrained(AutoModel.from_pretrained(base_dir), str(adapter)),
        "auto_model": lambda adapter: AutoModel.from_pretrained(adapter),
        "pipeline": lambda adapter: pipeline("scene-text-recognition", model=str(adapter)).model,
    }
    for name, warned in (("other", True), ("own", False)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            model = loaders[route](tmp_path / name)
        assert caplog.text.count("base weights differ") == int(warned), (name, caplog.text)
        assert "unexpected" not in caplog.text.lower(), caplog.text  # the fingerprint is no model tensor
        _logits(model.eval())  # and the adapter loaded and runs
