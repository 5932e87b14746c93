# make venv  : create .venv (torch 2.13.0 when none is importable, then requirements.txt and
#              the test-only requirements-test.txt)
# make test  : run the whole test suite in .venv
# make test-fast : the suite without the tests marked slow (under 2 minutes on 2 cores)
# make tools : install splat-transform and the viewer page's renderer (PlayCanvas engine, the
#              version web/package.json pins) into .tools/ (npm; needs Node.js) unless found
# make demo  : run the end-to-end demo (scripts/demo.sh)
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# extra pip flags for that install, e.g. an --index-url serving CPU-only torch wheels
TORCH_PIP_FLAGS ?=
VPY := $(VENV)/bin/python

.PHONY: venv test test-fast demo tools

venv: $(VENV)/.installed

# The stamp is rebuilt when a requirements file changes. torch is installed on its own first,
# and only when the venv cannot import one, so that an existing (e.g. CUDA) build is never
# replaced; the test requirements are installed with that torch pinned as a constraint.
$(VENV)/.installed: requirements.txt requirements-test.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install $(TORCH_PIP_FLAGS) "$(TORCH)"
	$(VPY) -m pip install -r requirements.txt
	$(VPY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(VPY) -m pip install -c $(VENV)/torch-constraint.txt -r requirements-test.txt
	touch $@

tools: venv
	$(VPY) -m utils.splat_transform
	$(VPY) -m utils.web_renderer

test: venv
	$(VPY) -m pytest tests -q

test-fast: venv
	$(VPY) -m pytest tests -q -m "not slow"

demo: venv
	bash scripts/demo.sh
