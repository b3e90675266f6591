# Set-up is part of every target: a fresh clone needs only `make quickstart` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: quickstart test docs bench bench-sweep bench-length gallery clean

quickstart: $(VENV)/.installed  ## the default sweep: tables and figures under results/quickstart/
	$(PY) -m harness -m experiment=quickstart

test: $(VENV)/.installed  ## the test suite, a worker per core (pytest-xdist)
	$(PY) -m pytest -n auto

docs: $(VENV)/.installed  ## the docs site (docs/, mkdocs.yml) into site/; --strict: a broken link, anchor or docstring fails it
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.installed  ## recorder speed against a plain torch loop
	$(PY) benchmarks/recorders.py

bench-sweep: $(VENV)/.installed  ## sweep speed: fast path, Hydra's basic path, joblib workers (~6 min)
	$(PY) benchmarks/sweep.py

bench-length: $(VENV)/.installed  ## long sequences: time, peak memory, ratios against fused torch and the in-memory recorder (~10 min)
	$(PY) benchmarks/length.py

gallery: $(VENV)/.installed  ## the README's reference figures: quickstart, theory_check, adding_remedies, memory_cells, spectrum, units, python (~17 min)
	rm -rf results/quickstart/reference results/theory_check/reference
	$(PY) -m harness -m experiment=quickstart hydra.sweep.dir=results/quickstart/reference
	for figure in profiles heatmap phase; do cp results/quickstart/reference/figures/$$figure.png results/reference/; done
	$(PY) -m harness -m experiment=theory_check hydra.sweep.dir=results/theory_check/reference
	cp results/theory_check/reference/figures/phase.png results/reference/theory_check_phase.png
	rm -rf results/adding_remedies/reference
	$(PY) -m harness -m experiment=adding_remedies hydra.sweep.dir=results/adding_remedies/reference
	for figure in losses learnability; do cp results/adding_remedies/reference/figures/$$figure.png results/reference/adding_remedies_$$figure.png; done
	cp results/adding_remedies/reference/figures/training_profiles_1.png results/reference/adding_remedies_training_profiles.png  # page 1
	rm -rf results/memory_cells/reference
	$(PY) -m harness -m experiment=memory_cells hydra.sweep.dir=results/memory_cells/reference
	cp results/memory_cells/reference/figures/profiles_loglog.png results/reference/memory_cells_loglog.png
	rm -rf results/spectrum/reference
	$(PY) -m harness -m experiment=spectrum hydra.sweep.dir=results/spectrum/reference
	cp results/spectrum/reference/figures/spectrum.png results/reference/spectrum_tanh.png
	rm -rf results/units/reference
	$(PY) -m harness -m experiment=units hydra.sweep.dir=results/units/reference
	for figure in units gates; do cp results/units/reference/figures/$$figure.png results/reference/; done
	$(PY) examples/record_lstm.py --out results/python && cp results/python/lstm_gru.png results/reference/python_lstm_gru.png

# torch is pinned and installed first: pip then takes the CPU build on disk instead of downloading
# several GB of CUDA packages for an unpinned torch.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV)
