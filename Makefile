# ffpt-ase: `make demo` runs the pipeline on embedded defaults, `make test` runs the tests.
# Both create .venv on first use. Install order matters on CPU-only machines:
#   1. torch==2.13.0 (the CPU wheel; an open range would pull several GB of CUDA wheels),
#   2. the package with its extras (its torch range is already satisfied),
#   3. the PLUMED kernel + `plumed` Python module from hillclimber, without its deps
#      (the PyPI `plumed` wrapper has no kernel and is not installed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ffpt-installed

.PHONY: install demo test clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps 'hillclimber>=0.1.8,<0.2'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ffpt-ase demo -o demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) demo_output *.egg-info
