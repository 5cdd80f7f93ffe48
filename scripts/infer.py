#!/usr/bin/env python
"""Recognise the text in images with a MambaOCR checkpoint (the same as the `mambaocr` command).

python scripts/infer.py word.png crops/ "more/*.jpg" --model runs/demo_cpu --format jsonl
"""

import sys

from mambaocr_hf.cli import main

if __name__ == "__main__":
    sys.exit(main())
