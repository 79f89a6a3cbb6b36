# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv on first use and install what is missing. torch is pinned and installed
# first: this machine has a local CPU wheel of torch 2.13.0, any other spec pulls GBs of CUDA.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.vecq_hw-installed
TORCH   = torch==2.13.0
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	@command -v g++ >/dev/null || { echo "g++ is required for C simulation (apt-get install g++)"; exit 1; }
	@command -v verilator >/dev/null && command -v yosys >/dev/null || { \
	  echo "installing verilator and yosys (the RTL path) with apt-get ..."; \
	  ($(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y verilator yosys) >/dev/null || { \
	  echo "verilator and yosys are required (RTL tests): 'apt-get install -y verilator yosys' failed; install them and rerun"; exit 1; }; }
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vecq-hw demo

# Two workers for the two cores; tests sharing an expensive module fixture (the tiny demo,
# the ap_types oracle build) carry an xdist_group so they stay on one worker.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(PY) benchmarks/sim_throughput.py
	$(PY) benchmarks/estimate.py

clean:
	rm -rf build runs .pytest_cache
