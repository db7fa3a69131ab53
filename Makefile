# charjax developer entry points. Every target sets up .venv first when needed.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: setup demo test lint bench clean

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(VENV_STAMP)

setup: $(VENV_STAMP)

demo: setup
	.venv/bin/charjax demo

test: setup
	$(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/run_all.py --quick

# docs/gui.png: the GUI with a drawn letter, rendered offscreen; needs a run under ./runs
# (for example after `make demo`).
.PHONY: screenshot
screenshot: setup
	$(PY) -m charjax.apps.screenshot --out docs/gui.png

clean:
	rm -rf .venv build *.egg-info runs .pytest_cache
