# Two commands for a fresh clone (only the package registries are needed):
#   make demo   set everything up, train on the embedded synthetic data, export, recommend
#   make test   set everything up and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := models/demo

.PHONY: setup demo test clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/twostage train --data synthetic --out $(DEMO)
	$(BIN)/twostage recommend --model $(DEMO) --user 1 --user 2 --user 3 -k 10

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) models *.egg-info
