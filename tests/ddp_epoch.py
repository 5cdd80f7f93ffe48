"""Run by `test_train.py` under torchrun (2 CPU processes, gloo): one epoch of the training DataLoader that
`make_ocr_trainer` builds, for each way a training set comes in. Prints, on rank 0, what every rank read."""

import io
import json
import sys

import torch.distributed as dist
from PIL import Image
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import load_ocr_dataset, write_lmdb
from mambaocr_hf.training import make_ocr_trainer, setup_training_run


def main(root: str) -> None:
    args = TrainingArguments(
        output_dir=f"{root}/out", per_device_train_batch_size=4, report_to="none", use_cpu=True,
        ddp_backend="gloo", dataloader_num_workers=0, max_steps=1,
    )  # fmt: skip
    setup_training_run(args, __import__("logging").getLogger("ddp_epoch"))
    processor = MambaOCRProcessor.from_defaults()
    model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet10t", hidden_size=32, state_size=4, max_width=128))
    with args.main_process_first():
        if args.process_index == 0:
            rows = []
            for i in range(22):  # not a multiple of 2 ranks x 4: partial batches; widths vary, so bucketing reorders
                buffer = io.BytesIO()
                Image.new("RGB", (40 + 4 * i, 32), (i, i, i)).save(buffer, format="PNG")
                rows.append({"image": buffer.getvalue(), "text": f"w{i:02d}"})
            write_lmdb(rows, f"{root}/lmdb", show_progress=False)
    cases = {
        "stream": (lambda: load_ocr_dataset(f"{root}/lmdb", processor=processor), False),
        "stream, group_by_width": (lambda: load_ocr_dataset(f"{root}/lmdb", processor=processor), True),
        "map-style, group_by_width": (
            lambda: load_ocr_dataset(f"{root}/lmdb", processor=processor, streaming=False),
            True,
        ),
    }
    seen = {}
    for name, (load, group) in cases.items():
        trainer = make_ocr_trainer(model, processor, args, load(), group_by_width=group)
        texts = []
        for batch in trainer.get_train_dataloader():
            texts += processor.tokenizer.batch_decode(batch["labels"].numpy(), group_tokens=False)
        gathered = [None] * args.world_size
        dist.all_gather_object(gathered, texts)
        seen[name] = gathered
    if args.process_index == 0:
        print("SEEN " + json.dumps(seen), flush=True)
    # a clean shutdown: neither rank leaves while the other still talks to the store that rank 0 hosts (one CI run
    # saw a rank abort, SIGABRT, after SEEN was printed)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
