# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""`python -m mambaocr_hf.demo --model runs/demo_cpu`: the same as `mambaocr-demo`."""

import sys

from .app import main

sys.exit(main())
