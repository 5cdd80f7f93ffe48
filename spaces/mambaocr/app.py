"""MambaOCR demo Space: the package's demo page (`mambaocr_hf.demo`), pointed at a model.

Which model: the Space variable `MAMBAOCR_MODEL` (a Hub model id, e.g. `org/mambaocr`, or an adapter repo), else a
checkpoint folder `model/` uploaded next to this file. See docs/demo_page.md for pushing this folder as a Space.
"""

import os
from pathlib import Path

from mambaocr_hf.demo.app import build_demo, launch_demo

MODEL = os.environ.get("MAMBAOCR_MODEL") or str(Path(__file__).resolve().parent / "model")

demo = build_demo(MODEL)

if __name__ == "__main__":
    launch_demo(demo, host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
