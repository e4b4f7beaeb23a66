# Deep Learning, from the Perceptron to the Supercomputer
#
#   make lab      set up .venv if needed, then start JupyterLab on the course
#                 (Horovod, for notebook 13 and lab07, builds in the background)
#   make test     set up .venv and Horovod if needed, then run every test, notebook and lab
#   make horovod  build Horovod now, or wait for the background build
#   make doctor   check frameworks, devices and data
#   make bench    measure the course against reference recipes; writes BENCHMARKS.md
#
# Set-up is incremental: .venv is (re)built only when requirements.txt changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SETUP_ARGS ?=
LAB_ARGS ?=
PYTEST_ARGS ?=
# Tests run in two phases: first everything that can share the machine, TEST_WORKERS at a
# time (pytest-xdist; notebooks and lab gradings use one thread each); then, one at a time,
# what needs the whole machine (marked `serial` in conftest.py: timing notebooks, Horovod,
# the browser). TEST_WORKERS=0 runs the first phase serially too.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
NB ?= notebooks/*.ipynb
BENCH_ARGS ?=

# TensorFlow's C++ logs go to stderr and break nbval's output checks. They must be
# set before Jupyter or pytest start kernels; setting them inside a notebook is too late.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_ENABLE_ONEDNN_OPTS ?= 0
# glibc returns big buffers to the OS after every training step by default; keeping
# them made a CPU PyTorch MNIST step 12-14% faster here.
export MALLOC_MMAP_THRESHOLD_ ?= 67108864
export MALLOC_TRIM_THRESHOLD_ ?= 268435456

.PHONY: setup horovod lab test doctor notebooks clean bench

setup:
	@$(PYTHON) scripts/setup_env.py --venv $(VENV) $(SETUP_ARGS)

# Horovod ready when this returns: waits for a background build, or builds (cached afterwards).
horovod:
	@$(PYTHON) scripts/setup_env.py --venv $(VENV) --horovod wait $(SETUP_ARGS)

# Jupyter refuses to run as root unless told; containers and cloud images often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(ALLOW_ROOT) \
	    --LabApp.default_url=/lab/tree/notebooks/00_setup_and_tour.ipynb $(LAB_ARGS)

PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)

# pytest exits 5 when a phase selects no test (e.g. PYTEST_ARGS names one file): not a failure.
test: horovod
	@rm -f reports/test-phase-*.json
	@status=0; \
	DLCOURSE_TEST_PHASE=parallel $(BIN)/python -m pytest $(PARALLEL) -m "not serial" $(PYTEST_ARGS) || \
	    { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	DLCOURSE_TEST_PHASE=serial $(BIN)/python -m pytest -p no:xdist -m serial $(PYTEST_ARGS) || \
	    { rc=$$?; [ $$rc -eq 5 ] || status=$$rc; }; \
	exit $$status

doctor: setup
	$(BIN)/python -m dlcourse doctor

# Benchmarks (not part of `make test`): about 20 minutes on a quiet 2-core AVX2 machine; BENCH_ARGS="--quick" for a check.
bench: horovod
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Re-execute lecture notebooks in the fast profile and store their outputs (for git),
# then rebuild their slide decks, which are made from those outputs.
notebooks: horovod
	DLCOURSE_PROFILE=fast $(BIN)/python scripts/execute_notebooks.py $(NB)
	$(BIN)/python scripts/build_slides.py

clean:
	rm -rf reports .pytest_cache

# Rebuild the reveal.js decks in slides/ from the notebooks' stored outputs (nothing is executed),
# then open each in headless Chromium: the build fails when a slide overflows.
.PHONY: slides
slides: setup
	$(BIN)/python scripts/build_slides.py
	$(BIN)/python scripts/deck_metrics.py --check
