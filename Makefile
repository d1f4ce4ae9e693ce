# diffusion_edu: the two commands a newcomer needs.
#   make lab    create .venv (first time only), install, open JupyterLab on notebooks/
#   make test   create .venv (first time only), install, run the library tests and every notebook
#               (in JupyterLab in Chromium: tests/browser; under nbval where Chromium is missing)
#   make lint   ruff check and ruff format --check (CI runs it before make test)
# Re-running either is fast: the install step only re-runs when pyproject.toml changes.
# For teachers (README, "Teaching with this course"):
#   make bundle           the offline classroom bundle in bundle/: wheels + the course, for USB sticks
#   make install-offline BUNDLE=path   install this checkout from a bundle's wheels, no network
#   make site             every lesson run in quick mode and rendered to static HTML in site/

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: lab test lint clean-venv bundle install-offline site

# --no-compile: no .pyc files made ahead of time (Python writes them on first import); it halves
# the install (measured 54 s instead of 108 s for the offline bundle, tests/test_bundle.py).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "diffusion_edu needs Python 3.10 or newer; this is " + sys.version.split()[0] + ". Install a newer Python, or run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@touch $(STAMP)

# (--allow-root only when run as root, e.g. inside a container, where JupyterLab refuses to start without it)
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# DIFFUSION_EDU_QUICK=1 is the notebooks' quick switch: smaller training runs, same code path.
# Two pytest workers (pytest-xdist) share the cores: much of a notebook's run is waiting (kernel
# start-up, the browser, widget redraws), so two at a time finish sooner. (Three on 2 cores were
# slower: pytest 1,056 s against 995 s for two, 2026-12-02; docs/performance.md, "Issue 14".)
# `--dist loadgroup` with the groups conftest.py gives: each file on one worker (a notebook's
# cells run in order in one kernel), and each lesson's browser test a group of its own, so both
# workers open lessons in the browser. `--no-loadscope-reorder` hands the groups out in
# collection order, which puts the long ones (the browser's) first and the short ones last, so
# the two workers finish close together. Each worker, and the kernels it starts, gets cores /
# workers PyTorch threads (1 on a 2-core CPU): more threads than cores spin and wait on each
# other. One worker, as before: `make test TEST_WORKERS=0`.
TEST_WORKERS ?= 2
CORES        := $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
TEST_THREADS ?= $(shell n=$$(( $(CORES) / ($(TEST_WORKERS) > 0 ? $(TEST_WORKERS) : 1) )); echo $$(( n > 0 ? n : 1 )))
test: $(STAMP)
	DIFFUSION_EDU_QUICK=1 MPLBACKEND=Agg OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -rs --durations=20 --nbval-lax --nbval-current-env -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)

# The offline classroom bundle (scripts/make_bundle.py): this platform's wheels for the runtime
# pins and JupyterLab (Linux: PyTorch's CPU-only wheel), a copy of the course, install.sh and
# INSTALL.txt. Wheels are platform-specific: build it on the students' OS with their Python.
BUNDLE ?= bundle
bundle: $(STAMP)
	$(BIN)/python scripts/make_bundle.py --out $(BUNDLE) $(BUNDLE_ARGS)

# Install this checkout into .venv from a bundle's wheels, with no network (the bundle's own
# install.sh; students run `sh install.sh` in the bundle instead).
install-offline:
	PYTHON=$(PYTHON) sh $(BUNDLE)/install.sh $(CURDIR)

# The course as a static website (scripts/make_site.py): every lesson executed in quick mode and
# rendered to site/NN_name.html, with site/index.html. A subset: make site SITE_ARGS="--lessons 00 03"
SITE ?= site
site: $(STAMP)
	DIFFUSION_EDU_QUICK=1 $(BIN)/python scripts/make_site.py --out $(SITE) $(SITE_ARGS)
