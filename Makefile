# Two entry points, each doing its own set-up on a fresh clone:
#   make demo   the main job: train the CPU demo preset on synthetic words (see README)
#   make test   the test suite
#   make test-fast   the suite without the tests marked slow (subprocesses, end to end): a minute or so
#   make demo-page   the demo web page (Gradio) on the checkpoint `make demo` trained: http://127.0.0.1:7860
#   make fix-copies  regenerate mambaocr_hf/cpu_kernels_source.py after editing mambaocr_hf/cpu_kernels.c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-page smoke test test-fast lint fix-copies clean

# torch==2.14.1 from this machine's wheel store is a CUDA build: the virtualenv takes ~6.6 GB, so check the disk
# first rather than let pip stop half-way with "No space left on device"
MIN_FREE_GB ?= 8

$(STAMP): setup.cfg pyproject.toml
	@mkdir -p $(dir $(abspath $(VENV))); free_kb=$$(df -Pk $(dir $(abspath $(VENV))) | awk 'NR == 2 {print $$4}'); \
	if [ -n "$$free_kb" ] && [ "$$free_kb" -lt $$(( $(MIN_FREE_GB) * 1024 * 1024 )) ]; then \
		echo "make install: $$(( free_kb / 1024 / 1024 )) GB free on $$(df -P $(dir $(abspath $(VENV))) | awk 'NR == 2 {print $$6}'), the" \
			"virtualenv needs about $(MIN_FREE_GB) GB (PyTorch with its CUDA libraries is 5.5 GB). Free some space" \
			"or point VENV=... at another disk (MIN_FREE_GB=... overrides the check)." >&2; \
		exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision first, pinned to the releases this machine's pip serves from local disk
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[dev,synth]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/train.py scripts/configs/demo_cpu.json

demo-page: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m mambaocr_hf.demo --model $(or $(MODEL),runs/demo_cpu)

smoke: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) scripts/check_copies.py

# the C kernels' source of truth is mambaocr_hf/cpu_kernels.c; checkpoints carry the generated Python copy
fix-copies:
	$(PYTHON) scripts/check_copies.py --fix

clean:
	rm -rf $(VENV) build dist *.egg-info
