# Two entry points: `make demo` (the main job) and `make test` (lint + the whole test suite).
# Both create .venv with Python 3 and install ferlab into it first; nothing else is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FERLAB_DATA ?= $(abspath ../shared/data)
export FERLAB_DATA

.PHONY: demo test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,onnx,web,explain,generate]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m ferlab datasets --plot outputs/demo
	$(BIN)/python -m ferlab balance --dataset fer2013 --splits train
	$(BIN)/python -m ferlab export-data --dataset fer2013 --out outputs/demo/fer2013.h5
	$(BIN)/python -c "from skimage import data; from PIL import Image; import os; os.makedirs('outputs/demo/photos', exist_ok=True); Image.fromarray(data.astronaut()).save('outputs/demo/photos/astronaut.jpg')"
	$(BIN)/python -m ferlab prepare outputs/demo/photos outputs/demo/faces --size 48
	$(BIN)/python -m ferlab predict src/ferlab/assets/astronaut.jpg --model default --annotate outputs/demo
	@echo "demo outputs in outputs/demo/ (class-count charts, fer2013.h5 cache, faces/ crops, annotated astronaut.jpg)"

test: $(VENV)/.installed
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools
	$(BIN)/python -m pytest -q -p no:cacheprovider
