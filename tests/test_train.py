"""The training script and Trainer helpers, with a tiny model and a few steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import OCRDataCollator, SyntheticConfig, load_ocr_dataset
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.presets import load_preset
from mambaocr_hf.training import (
    OCRTrainer,
    build_model_and_processor,
    cpu_supports_bf16,
    make_ocr_trainer,
    parameter_table,
    resolve_resume_checkpoint,
)

from .conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
TINY = "backbone=resnet10t,hidden_size=32,state_size=4,adapter_size=8,hidden_dropout=0.0"
TINY_ARGS = [
    "--config_overrides", TINY,
    "--max_width", "128",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "8",
    "--max_eval_samples", "8",
    "--num_demo_images", "2",
    "--logging_steps", "1",
    "--eval_strategy", "steps",
    "--save_strategy", "steps",
    "--dataloader_num_workers", "0",
    "--bf16", "False",
    "--report_to", "none",
    "--learning_rate", "0.001",
]  # fmt: skip


def _saved_totals(checkpoint: Path) -> dict:
    """What a checkpoint carries of the run's totals (in trainer_state.json, with the Trainer's own state)."""
    return json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]["RunTotalsCallback"][
        "args"
    ]


def _run(args, cwd, extra_env=None, launcher=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    command = (launcher or [sys.executable]) + [str(ROOT / "scripts" / "train.py"), *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout + result.stderr


def test_parse_preset_with_overrides(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    preset = str(ROOT / "scripts" / "configs" / "demo_cpu.json")
    monkeypatch.setattr(sys, "argv", ["train.py", preset, "--max_steps", "50", "--output_dir", "runs/x"])
    model_args, data_args, training_args = train._parse_args()
    assert training_args.max_steps == 50 and training_args.output_dir == "runs/x"  # the flags win
    assert model_args.preset == "small-narrow" and data_args.dataset == "synthetic"  # the preset's values
    assert training_args.learning_rate == 0.001 and training_args.metric_for_best_model == "cer"
    # JSON null is the default where that is None (not the string "None"); elsewhere a clear error
    nulls = tmp_path / "nulls.json"
    nulls.write_text(json.dumps({"output_dir": "runs/y", "config_overrides": None, "synthetic_config": None}))
    monkeypatch.setattr(sys, "argv", ["train.py", str(nulls)])
    model_args, data_args, _ = train._parse_args()
    assert model_args.config_overrides is None and data_args.synthetic_config is None
    nulls.write_text(json.dumps({"output_dir": "runs/y", "max_eval_samples": None}))
    with pytest.raises(ValueError, match="'max_eval_samples' is null, but its default is 1000, not None"):
        train._parse_args()
    assert train._parse_overrides("hidden_size=64,sequence_model=bilstm,bidirectional=false") == {
        "hidden_size": 64,
        "sequence_model": "bilstm",
        "bidirectional": False,
    }
    # commas inside JSON values do not split items (the demo preset narrows the ResNet this way)
    assert train._parse_overrides('backbone_kwargs={"channels":[64,128,256,256]},name="a,b",hidden_dropout=0') == {
        "backbone_kwargs": {"channels": [64, 128, 256, 256]},
        "name": "a,b",
        "hidden_dropout": 0,
    }
    with pytest.raises(ValueError, match="'hidden_size:64' is not `key=value`"):
        train._parse_overrides("hidden_size:64,sequence_model=bilstm")
    for name in (
        "demo_cpu",
        "synthetic_cpu_long",
        "mjsynth",
        "finetune_folder",
        "scene_text_cpu",
        "scene_text_lines_cpu",
        "lines_cpu",
    ):
        monkeypatch.setattr(sys, "argv", ["train.py", str(ROOT / "scripts" / "configs" / f"{name}.json")])
        train._parse_args()  # every preset parses
    # a curriculum names its easy distribution: a preset file's synthetic_config, or JSON
    with pytest.raises(ValueError, match="--curriculum_synthetic_config"):
        train._curriculum_config(train.DataArguments(curriculum_samples=100))
    monkeypatch.chdir(ROOT)
    args = train.DataArguments(
        curriculum_samples=100, curriculum_synthetic_config="scripts/configs/synthetic_light.json"
    )
    assert train._curriculum_config(args).neighbor_p == 0.0
    # a preset may name a file of SyntheticConfig fields (here the curriculum's light words); no entry: the defaults
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"synthetic_config": "scripts/configs/synthetic_light.json"}))
    assert synthetic_config_from(str(named)) == train._curriculum_config(args)
    assert synthetic_config_from("scripts/configs/demo_cpu.json") == SyntheticConfig()  # make demo: the realistic one
    assert synthetic_config_from("scripts/configs/scene_text_cpu.json") == SyntheticConfig()
    with pytest.raises(ValueError, match=r"Unknown SyntheticConfig fields \['neighbour_p'\]"):
        synthetic_config_from('{"neighbour_p": 0.5}')


def test_a_preset_extends_another(monkeypatch, tmp_path):
    """`"extends"` names a base preset beside the file: its values, with the file's keys replacing them (a
    `synthetic_config` whole), reach the scripts' flags and the generator; the flags on the command line still win."""
    base = tmp_path / "configs" / "base.json"
    base.parent.mkdir()
    base.write_text(json.dumps({"output_dir": "runs/base", "max_steps": 100, "synthetic_config": {"line_p": 0.2}}))
    middle = base.with_name("middle.json")
    middle.write_text(json.dumps({"extends": "base.json", "max_steps": 200, "learning_rate": 0.002}))
    top = tmp_path / "top.json"  # in another folder: `extends` is relative to the extending file
    top.write_text(json.dumps({"extends": "configs/middle.json", "max_steps": 300}))
    assert load_preset(top) == {
        "output_dir": "runs/base",
        "max_steps": 300,
        "learning_rate": 0.002,
        "synthetic_config": {"line_p": 0.2},
    }
    train = load_script("train")
    monkeypatch.setattr(sys, "argv", ["train.py", str(top), "--learning_rate", "0.003"])
    _, data_args, training_args = train._parse_args()
    assert (training_args.max_steps, training_args.learning_rate, training_args.output_dir) == (
        300,
        0.003,
        "runs/base",
    )
    assert synthetic_config_from(str(top)).line_p == 0.2  # the base's synthetic_config, as the scripts read it
    assert synthetic_config_from(data_args.synthetic_config).line_p == 0.2
    # bad input: a missing base, a cycle, an `extends` that is not a file name, a file that is not an object
    top.write_text(json.dumps({"extends": "configs/nowhere.json"}))
    with pytest.raises(FileNotFoundError, match=r"No preset file .*nowhere.json \(named by `extends` in .*top.json\)"):
        load_preset(top)
    base.write_text(json.dumps({"extends": "middle.json"}))
    with pytest.raises(ValueError, match="Presets extend each other in a cycle: .*middle.json -> .*base.json -> "):
        load_preset(middle)
    base.write_text(json.dumps({"extends": ["middle.json"]}))
    with pytest.raises(ValueError, match="`extends` must name another preset file"):
        load_preset(base)
    base.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_preset(base)


def _parse_demo_preset(monkeypatch, tmp_path, *flags):
    """train.py's (model, data, training) arguments for `make demo`'s preset with `flags` added."""
    train = load_script("train")
    preset = str(ROOT / "scripts" / "configs" / "demo_cpu.json")
    monkeypatch.setattr(sys, "argv", ["train.py", preset, "--output_dir", str(tmp_path), *flags])
    return train, *train._parse_args()


def test_synthetic_cache_is_no_larger_than_the_run_reads(monkeypatch, tmp_path):
    def cache_size(*flags):
        train, _, data_args, training_args = _parse_demo_preset(monkeypatch, tmp_path, *flags)
        return train._cache_samples(data_args, training_args)

    assert cache_size() == 40000  # make demo: 4,800 steps of 32 read 128,000 samples after its 25,600 curriculum words
    assert cache_size("--max_steps", "1000") == 1000 * 32 - 25600  # a shorter run renders what it reads
    assert cache_size("--max_steps", "50") == 32  # all curriculum: one batch's worth, not 40,000
    assert (
        cache_size("--max_steps", "1000", "--curriculum_samples", "0", "--gradient_accumulation_steps", "2") == 40000
    )
    assert cache_size("--synthetic_cache_samples", "0") == 0  # rendering on the fly stays so


def test_training_batches_are_padded_to_a_multiple_of_32_unless_told(monkeypatch, tmp_path):
    def padding(*flags):
        _, _, data_args, _ = _parse_demo_preset(monkeypatch, tmp_path, *flags)
        return data_args.stream_options(data_args.dataset)["pad_to_multiple_of"]

    assert padding() == 32  # fewer batch shapes: faster oneDNN convolutions (docs/speed.md)
    assert padding("--pad_to_multiple_of", "64") == 64
    assert padding("--pad_to_multiple_of", "0") is None  # to the widest image only


@pytest.mark.slow
def test_train_evaluate_save_and_resume(tmp_path):
    output = tmp_path / "run"
    log = _run(
        ["--output_dir", str(output), "--max_steps", "3", "--eval_steps", "3", "--save_steps", "3", *TINY_ARGS],
        tmp_path,
    )
    assert "Freeze strategy: full" in log and "backbone.layer4" in log  # parameter table
    assert "Held-out evaluation" in log and "Fresh synthetic images" in log
    results = json.loads((output / "eval_results.json").read_text())
    assert {"eval_cer", "eval_wer", "eval_word_accuracy", "eval_word_accuracy_ci_alnum", "eval_one_minus_ned"} <= set(
        results
    )
    files = set(os.listdir(output))
    assert {"model.safetensors", "config.json", "modeling_mambaocr.py", "vocab.json", "README.md"} <= files
    # trained on crops squeezed to 128 px, the saved processor still reads 2048 px lines without squeezing them
    assert json.loads((output / "processor_config.json").read_text())["image_processor"]["max_width"] == 2048
    card = (output / "README.md").read_text()
    assert "synthetic (validation) cer" in card and "3 steps" in card
    # a killed run restarted with the same command continues from its last checkpoint
    log = _run(
        ["--output_dir", str(output), "--max_steps", "5", "--eval_steps", "5", "--save_steps", "5", *TINY_ARGS],
        tmp_path,
    )
    assert "Resuming from" in log and "checkpoint-3" in log
    state = json.loads((output / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    # the reported time is the whole run's: the 3 steps before the resume are in it
    before = _saved_totals(output / "checkpoint-3")["train_seconds"]
    results = json.loads((output / "train_results.json").read_text())
    # train_runtime (this part alone) is rounded to 4 decimals
    assert (
        results["resumed_from_step"] == 3 and results["train_minutes"] * 60 > before + results["train_runtime"] - 0.01
    )
    assert _saved_totals(output / "checkpoint-5")["train_seconds"] > before


@pytest.mark.slow
def test_finetune_folder_preset_from_a_checkpoint(tmp_path):
    """The README's fine-tuning command: a checkpoint, a folder of crops with train/ and val/, flags of a new model
    ignored with a warning, `--max_width` applied to the loaded processor, and `--resume_from_checkpoint True`."""
    from PIL import Image, ImageDraw

    from mambaocr_hf import save_checkpoint

    from .conftest import tiny_config_kwargs

    torch.manual_seed(0)
    base = tmp_path / "base"
    save_checkpoint(MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())), MambaOCRProcessor.from_defaults(), base)
    # the last training crop is 640×32: too wide for --max_width 128 (squeezed 5×), fine for the checkpoint's 2048
    words = {"train": ["abc", "hello", "42", "mamba", "ocr", "x" * 60], "val": ["test", "crop"]}
    for split, split_words in words.items():
        (tmp_path / "crops" / split).mkdir(parents=True)
        for index, word in enumerate(split_words):
            image = Image.new("RGB", (640 if len(word) == 60 else 16 * len(word) + 8, 32), "white")
            ImageDraw.Draw(image).text((4, 8), word, fill="black")
            image.save(tmp_path / "crops" / split / f"{index}.png")
        (tmp_path / "crops" / split / "labels.tsv").write_text(
            "".join(f"{i}.png\t{w}\n" for i, w in enumerate(split_words))
        )
    common = [
        str(ROOT / "scripts" / "configs" / "finetune_folder.json"), "--model_name_or_path", str(base),
        "--dataset", str(tmp_path / "crops"), "--eval_dataset", str(tmp_path / "crops"), "--output_dir",
        str(tmp_path / "out"), "--max_width", "128", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "2", "--num_demo_images", "0", "--bf16", "False",
        "--dataloader_num_workers", "0", "--report_to", "none", "--logging_steps", "1",
    ]  # fmt: skip
    log = _run([*common, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--config_overrides",
                "hidden_size=64"], tmp_path)  # fmt: skip
    assert "--config_overrides describe a new model and are ignored" in log
    assert "Freeze strategy: adapters_layer4" in log and "Held-out evaluation" in log
    assert "(640x32, ratio 20 outside" in log  # trained at --max_width 128, not at the checkpoint's 2048
    assert json.loads((tmp_path / "out" / "processor_config.json").read_text())["image_processor"]["max_width"] == 2048
    log = _run([*common, "--max_steps", "3", "--eval_steps", "3", "--save_steps", "3", "--resume_from_checkpoint",
                "True"], tmp_path)  # fmt: skip
    state = json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["log_history"][0]["step"] == 1  # the history of steps 1-2 kept


LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"],
    # accelerate's multi-process launcher is torchrun underneath; on a machine without GPUs the ranks run on CPU
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29534"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_data_parallel_on_cpu_with_gloo(tmp_path, launcher):
    output = tmp_path / "ddp"
    log = _run(
        ["--output_dir", str(output), "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", *TINY_ARGS,
         "--ddp_backend", "gloo"],
        tmp_path,
        extra_env={"OMP_NUM_THREADS": "1"},
        launcher=[sys.executable, *LAUNCHERS[launcher]],
    )  # fmt: skip
    assert "Data-parallel: 2 processes (gloo backend)" in log and "8 images per step in all" in log
    assert (output / "model.safetensors").is_file() and (output / "checkpoint-2").is_dir()
    state = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


@pytest.mark.slow
def test_data_parallel_ranks_read_every_sample_once(tmp_path):
    """Each of 2 processes reads its own part of the training set, and together they read all of it, once: the
    stream is split once (not by us and again by accelerate, which left each rank 1/4 of the data)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *LAUNCHERS["torchrun"], str(ROOT / "tests" / "ddp_epoch.py"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    seen = json.loads(result.stdout.split("SEEN ", 1)[1].splitlines()[0])
    everything = sorted(f"w{i:02d}" for i in range(22))
    assert set(seen) == {"stream", "stream, group_by_width", "map-style, group_by_width"}
    for name, (rank0, rank1) in seen.items():
        assert rank0 and rank1, name  # each rank reads its own shards (whole shards: the counts may differ)
        assert sorted(rank0 + rank1) == everything, name  # no row twice, none left out, partial batches included


def test_training_stream_is_shuffled(tmp_path):
    """Folders and LMDBs are often written sorted: the trainer's stream is shuffled from the first epoch on, with a
    new order each epoch, and keeps the stream's order with `shuffle_buffer_size=0`."""
    processor = MambaOCRProcessor.from_defaults()
    texts = [f"w{i:02d}" for i in range(40)]
    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(len(texts)):
        Image.new("RGB", (64, 32), (i, i, i)).save(folder / f"{i:02d}.png")
    (folder / "labels.tsv").write_text("".join(f"{i:02d}.png\t{text}\n" for i, text in enumerate(texts)))
    model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet10t", hidden_size=32, state_size=4, max_width=128))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, report_to="none",
                             use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False, max_steps=1)  # fmt: skip

    def order(shuffle_buffer_size, epoch=0):
        dataset = load_ocr_dataset(str(folder), processor=processor)
        trainer = make_ocr_trainer(model, processor, args, dataset, group_by_width=False,
                                   shuffle_buffer_size=shuffle_buffer_size)  # fmt: skip
        trainer.train_dataset.set_epoch(epoch)
        return [row["text"] for row in trainer.train_dataset]

    assert order(0) == texts
    first, again, second = order(1000), order(1000), order(1000, epoch=1)
    assert sorted(first) == sorted(second) == texts
    assert first == again  # a function of the seed: a resumed run sees the order the killed one would have
    assert first != texts and second != first
    # a map-style dataset with a transform cannot be streamed: it is shuffled by index and keeps its transform
    rows = load_ocr_dataset(str(folder), processor=processor, streaming=False, cache_dir=str(tmp_path / "cache"))
    rows = rows.with_transform(lambda batch: {**batch, "text": [t.upper() for t in batch["text"]]})
    trainer = make_ocr_trainer(model, processor, args, rows)
    read = [row["text"] for row in trainer.train_dataset]
    assert sorted(read) == [t.upper() for t in texts] and read != sorted(read)


@pytest.mark.slow
def test_nonfinite_loss_never_reaches_the_weights(tmp_path):
    from .conftest import tiny_config_kwargs

    processor = MambaOCRProcessor.from_defaults()
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128)))
    original_loss = model.ctc_loss
    model.ctc_loss = lambda *args: original_loss(*args) * float("nan")
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to="none", use_cpu=True,
        remove_unused_columns=False, save_strategy="steps", save_steps=2, logging_steps=1,
    )  # fmt: skip
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=8, seed=0)
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))
    trainer.train()
    assert trainer.nonfinite_steps == 2 and trainer.resumed_from_step is None
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    # a resumed run counts the steps and the time before its checkpoint too
    totals = _saved_totals(tmp_path / "checkpoint-2")
    assert totals["nonfinite_steps"] == 2 and 0 < totals["train_seconds"] <= trainer.train_seconds
    args.max_steps = 3
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))
    trainer.train(resume_from_checkpoint=True)
    assert trainer.nonfinite_steps == 3 and trainer.resumed_from_step == 2
    assert trainer.train_seconds > totals["train_seconds"]
    # the same when Trainer itself restores the callback states (it re-creates the callback from what was saved)
    args.max_steps, args.save_steps, args.restore_callback_states_from_checkpoint = 4, 1, True
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))
    trainer.train(resume_from_checkpoint=True)
    assert trainer.nonfinite_steps == 4 and trainer.resumed_from_step == 3
    assert trainer.train_seconds > _saved_totals(tmp_path / "checkpoint-3")["train_seconds"] > totals["train_seconds"]


@pytest.mark.slow
def test_fp16_gradient_scaler_handles_overflow_itself(tmp_path):
    """Under --fp16 a GradScaler skips the steps whose gradients overflow and lowers its scale: the non-finite guard
    must leave those gradients to it (dropping them made the scaler raise "No inf checks were recorded"). Simulated
    on CPU with torch's CPU GradScaler and gradients that overflow in the first two steps."""
    from transformers import TrainerCallback

    from .conftest import tiny_config_kwargs

    processor = MambaOCRProcessor.from_defaults()
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128)))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2, report_to="none", use_cpu=True,
        remove_unused_columns=False, save_strategy="no", learning_rate=1e-3,
    )  # fmt: skip
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=8, seed=0)
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)  # what --fp16 sets up on CUDA
    backward_calls = []

    def overflow(grad):
        backward_calls.append(1)
        return grad * float("inf") if len(backward_calls) <= 2 else grad

    model.classifier.weight.register_hook(overflow)
    start, after_steps = model.classifier.weight.detach().clone(), []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            after_steps.append((trainer.accelerator.scaler.get_scale(), model.classifier.weight.detach().clone()))

    trainer.add_callback(Record())
    trainer.train()
    assert [scale for scale, _ in after_steps] == [2.0**15, 2.0**14, 2.0**14, 2.0**14]
    assert torch.equal(after_steps[1][1], start)  # the two overflowing steps were skipped
    assert not torch.equal(after_steps[3][1], start)  # and training went on
    assert trainer.nonfinite_steps == 0  # overflow is the scaler's normal work, not a bad sample


@pytest.mark.slow
def test_gradient_accumulation_gives_the_full_batch_gradient(tmp_path):
    """Two accumulated half-batches give the gradient of the whole batch: Trainer divides the mean CTC loss by the
    accumulation steps (forward's **kwargs made it believe the model normalised the loss, and the gradient doubled)."""
    import copy

    from .conftest import tiny_config_kwargs

    torch.manual_seed(0)
    base = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(hidden_dropout=0.0)))
    base.apply_freeze_strategy("frozen_backbone")  # BatchNorms in eval: splitting the batch changes nothing else
    pixels = torch.randn(4, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [3, 3, 1]])
    reference = copy.deepcopy(base).train()
    reference(pixels, labels=labels).loss.backward()
    model = copy.deepcopy(base)
    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, per_device_train_batch_size=2,
                             report_to="none", use_cpu=True)  # fmt: skip
    trainer = OCRTrainer(model=model, args=args)
    assert trainer.model_accepts_loss_kwargs is False
    trainer.current_gradient_accumulation_steps = 2
    for half in (slice(0, 2), slice(2, 4)):
        trainer.training_step(model, {"pixel_values": pixels[half], "labels": labels[half]}, num_items_in_batch=9)
    torch.testing.assert_close(model.classifier.weight.grad, reference.classifier.weight.grad, rtol=1e-4, atol=1e-6)


def _complete_checkpoint(path: Path, step: int) -> Path:
    """The files Trainer writes into a checkpoint (tiny, but whole)."""
    path.mkdir()
    save_file({"weight": torch.zeros(3)}, str(path / "model.safetensors"))
    torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_checkpoint_flag(tmp_path):
    _complete_checkpoint(tmp_path / "checkpoint-2", 2)
    _complete_checkpoint(tmp_path / "checkpoint-10", 10)
    last = str(tmp_path / "checkpoint-10")
    assert resolve_resume_checkpoint("True", str(tmp_path)) == last == resolve_resume_checkpoint(True, str(tmp_path))
    assert resolve_resume_checkpoint(None, str(tmp_path), auto_resume=True) == last
    assert resolve_resume_checkpoint(None, str(tmp_path)) is None  # finetune_lora: no resume unless asked
    assert resolve_resume_checkpoint("false", str(tmp_path), auto_resume=True) is None
    assert resolve_resume_checkpoint(str(tmp_path / "checkpoint-2"), str(tmp_path)) == str(tmp_path / "checkpoint-2")
    with pytest.raises(ValueError, match="holds no complete checkpoint-N folder"):
        resolve_resume_checkpoint("True", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-7"), str(tmp_path))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: (c / "trainer_state.json").unlink(),  # killed before Trainer wrote its state (it comes last)
        lambda c: _truncate(c / "trainer_state.json"),
        lambda c: _truncate(c / "model.safetensors"),
        lambda c: (c / "model.safetensors").write_bytes(b""),
        lambda c: _truncate(c / "optimizer.pt"),
        lambda c: (c / "scheduler.pt").unlink(),
        lambda c: (c / "rng_state.pth").write_bytes(b"PK\x03\x04 cut short"),  # optional, but read when present
    ],
    ids=["no_state", "cut_state", "cut_weights", "empty_weights", "cut_optimizer", "no_scheduler", "cut_rng"],
)
def test_resume_passes_over_an_incomplete_checkpoint(tmp_path, caplog, damage):
    """Issue 20 item 2: a run killed while Trainer wrote `checkpoint-N` (in place) leaves an incomplete folder; the
    rerun resumes from the newest complete checkpoint and names the one it passed over."""
    earlier = str(_complete_checkpoint(tmp_path / "checkpoint-2", 2))
    damage(_complete_checkpoint(tmp_path / "checkpoint-10", 10))
    with caplog.at_level("WARNING"):
        assert resolve_resume_checkpoint(None, str(tmp_path), auto_resume=True) == earlier
        assert resolve_resume_checkpoint(True, str(tmp_path)) == earlier
    assert "Passing over the incomplete checkpoint" in caplog.text and "checkpoint-10" in caplog.text
    with pytest.raises(ValueError, match="checkpoint is incomplete"):  # named explicitly: an error, not a crash later
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-10"), str(tmp_path))


@pytest.mark.slow
def test_trainer_resumes_from_the_last_complete_checkpoint(tmp_path, caplog):
    """The same through `OCRTrainer.train(resume_from_checkpoint=True)` on a real run whose newest checkpoint lost
    its trainer_state.json and had its weights cut (Trainer itself takes the newest folder and fails)."""
    from .conftest import tiny_config_kwargs

    processor = MambaOCRProcessor.from_defaults()
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128)))
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to="none", use_cpu=True,
        remove_unused_columns=False, save_strategy="steps", save_steps=1,
    )  # fmt: skip
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=8, seed=0)
    OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor)).train()
    (tmp_path / "checkpoint-2" / "trainer_state.json").unlink()
    _truncate(tmp_path / "checkpoint-2" / "model.safetensors")
    args.max_steps = 3
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))
    with caplog.at_level("WARNING"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.resumed_from_step == 1 and trainer.state.global_step == 3
    assert f"Passing over the incomplete checkpoint {tmp_path / 'checkpoint-2'} (no trainer_state.json" in caplog.text


@pytest.mark.slow
def test_build_model_and_processor_for_both_scripts(tmp_path, caplog):
    """The one builder of train.py and finetune_lora.py: a new model from a preset and overrides, a checkpoint (whose
    processor takes the training width), and a new model whose encoder is a Mamba LM's."""
    from transformers import MambaConfig, MambaForCausalLM

    from mambaocr_hf import save_checkpoint

    model, processor = build_model_and_processor(
        preset="small", config_overrides=TINY, charset="digits", max_width=128
    )
    assert (model.config.backbone, model.config.hidden_size, model.config.vocab_size) == ("resnet10t", 32, 11)
    assert model.config.max_width == processor.image_processor.max_width == 128 and len(processor.tokenizer) == 11
    as_dict, _ = build_model_and_processor(
        preset="small", config_overrides={"backbone": "resnet10t", "hidden_size": 32}
    )
    assert as_dict.config.hidden_size == 32 and as_dict.config.adapter_size == 32  # the rest is the preset's
    with pytest.raises(ValueError, match="Unknown preset"):
        build_model_and_processor(preset="huge")
    # CRNN's plain stack is a trap for a run from scratch: the builder says so and names the residual variant
    with caplog.at_level("WARNING"):
        build_model_and_processor(preset="small", config_overrides=f"{TINY},sequence_model=bilstm_residual")
        assert "plateau" not in caplog.text
        lstm, _ = build_model_and_processor(preset="small", config_overrides=f"{TINY},sequence_model=bilstm")
    assert lstm.config.sequence_model == "bilstm"
    assert "blank-only plateau" in caplog.text and "sequence_model=bilstm_residual" in caplog.text

    save_checkpoint(model, processor, tmp_path / "ckpt")
    loaded, loaded_processor = build_model_and_processor(str(tmp_path / "ckpt"), preset="base", max_width=64)
    assert loaded.config.hidden_size == 32 and loaded.config.vocab_size == 11  # the checkpoint's, not the preset's
    assert loaded_processor.image_processor.max_width == 64
    assert build_model_and_processor(str(tmp_path / "ckpt"))[1].image_processor.max_width == 128

    torch.manual_seed(0)
    lm_config = MambaConfig(vocab_size=64, hidden_size=32, state_size=4, num_hidden_layers=3, expand=2)
    MambaForCausalLM(lm_config).save_pretrained(tmp_path / "lm")
    model, processor = build_model_and_processor(
        preset="small",
        config_overrides="backbone=resnet10t,adapter_size=8",
        init_from_mamba_lm=str(tmp_path / "lm"),
        mamba_lm_layers=2,
    )
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.adapter_size) == (32, 2, 8)
    lm = MambaForCausalLM.from_pretrained(tmp_path / "lm")
    assert torch.equal(model.encoder.layers[1].mixer.A_log, lm.backbone.layers[1].mixer.A_log)
    assert torch.equal(model.encoder.layers[1].mixer.A_log_reverse, lm.backbone.layers[1].mixer.A_log)  # "copy"


def test_parameter_table_and_bf16_probe():
    model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet10t", hidden_size=32))
    model.apply_freeze_strategy("adapters_layer4")
    table = parameter_table(model)
    assert table.splitlines()[0].split() == ["group", "trainable", "total"]
    assert "backbone.adapters" in table and "% trainable" in table
    assert isinstance(cpu_supports_bf16(), bool)


@pytest.mark.parametrize("flag", ["--bf16"])
def test_bf16_flag_parses_on_cpu(flag, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(sys, "argv", ["train.py", "--output_dir", "x", flag])
    _, _, training_args = train._parse_args()
    assert training_args.bf16 and (training_args.use_cpu or torch.cuda.is_available())


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_trains_in_float32(native, monkeypatch, tmp_path):
    import logging

    import mambaocr_hf.training
    from mambaocr_hf.training import setup_training_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(mambaocr_hf.training, "cpu_supports_bf16", lambda: native)
    args = TrainingArguments(str(tmp_path), bf16=True, use_cpu=True, report_to="none")
    setup_training_run(args, logging.getLogger("test"))
    assert args.bf16 is native
    # what counts is the autocast the Trainer's accelerator runs the steps under: emulated bf16 made a demo step
    # ~7x slower than float32 on an AVX2 CPU
    model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet10t", hidden_size=32))
    trainer = OCRTrainer(model=model, args=args)
    assert trainer.accelerator.mixed_precision == ("bf16" if native else "no")


@pytest.mark.parametrize("installed", [True, False])
def test_tensorboard_logging_when_installed(installed, monkeypatch, tmp_path):
    import logging

    import transformers.integrations

    from mambaocr_hf.training import setup_training_run

    monkeypatch.setattr(transformers.integrations, "is_tensorboard_available", lambda: installed)
    args = TrainingArguments(str(tmp_path), report_to=["tensorboard"], use_cpu=True)
    setup_training_run(args, logging.getLogger("test"))
    assert args.report_to == (["tensorboard"] if installed else [])
    assert args.remove_unused_columns is False


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2])
def test_dropped_nonfinite_step_is_skipped_everywhere(tmp_path, accumulation):
    """Issue 20 item 8: a step whose forward diverges (here: the images of step 2 turned to NaN) is logged as
    skipped (no `loss` of 0.0), left out of the `loss`/`train_loss` averages, changes no weight, and leaves
    BatchNorm's running statistics as they were (its forward made them NaN). With gradient accumulation the whole
    step goes: the bad micro-batch is step 2's first, and the one after it must not update the weights either."""
    from transformers import TrainerCallback

    from .conftest import tiny_config_kwargs

    processor = MambaOCRProcessor.from_defaults()
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(max_width=128)))
    model.apply_freeze_strategy("full")
    calls = []

    def poison(module, args):  # forward pre-hook of the backbone: (pixel_values, valid_pixels)
        calls.append(1)
        if len(calls) == accumulation + 1:  # the first micro-batch of step 2
            return (args[0] * float("nan"),) + tuple(args[1:])
        return None

    model.backbone.register_forward_pre_hook(poison)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=accumulation,
        report_to="none", use_cpu=True, remove_unused_columns=False, save_strategy="no", logging_steps=1,
        learning_rate=1e-3,
    )  # fmt: skip
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=12, seed=0)
    trainer = OCRTrainer(model=model, args=args, train_dataset=dataset, data_collator=OCRDataCollator(processor))

    def snapshot():
        return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    after_steps = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            after_steps.append(snapshot())

    trainer.add_callback(Record())
    result = trainer.train()
    assert len(calls) == 3 * accumulation and trainer.nonfinite_steps == 1
    step1, step2, step3 = after_steps[:3]
    for name, tensor in step2.items():  # weights and BatchNorm statistics as the step before left them
        assert torch.equal(tensor, step1[name]), name
    assert all(torch.isfinite(t).all() for t in step3.values() if t.is_floating_point())
    assert any(not torch.equal(step3[name], step2[name]) for name in step3)  # and training goes on
    logs = {entry["step"]: entry for entry in trainer.state.log_history if "learning_rate" in entry}
    assert "loss" not in logs[2] and logs[2]["skipped_steps"] == 1
    losses = [logs[step]["loss"] for step in (1, 3)]
    assert all(loss > 0 for loss in losses)
    assert result.training_loss == pytest.approx(sum(losses) / 2, rel=1e-4)
    assert result.metrics["train_loss"] == pytest.approx(sum(losses) / 2, rel=1e-4)
    assert result.metrics["train_skipped_steps"] == 1
