# Two commands for a fresh clone (only the package registries are needed):
#   make demo   set everything up, train on the embedded synthetic data, export, recommend
#   make test   set everything up (Chromium too, where apt-get may run) and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := models/demo

.PHONY: setup browser demo test clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# The browse page is tested in headless Chromium (Debian's chromium + chromium-driver).
browser:
	@if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver for the browse-page test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: no Chromium/chromedriver (and no root apt-get): the browse-page test will be skipped"; fi

demo: $(STAMP)
	$(BIN)/twostage train --data synthetic --out $(DEMO)
	$(BIN)/twostage recommend --model $(DEMO) --user 1 --user 2 --user 3 -k 10

# Two workers, one test file each at a time (a file's module fixtures train once); multi-process
# tests pick free ports on 127.0.0.1, so two can run side by side.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) models *.egg-info
