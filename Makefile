# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
# open3d links the system's libusb-1.0; uv installs the locked environment (uv.lock), which
# takes PyPI's matched torch + torchvision pair.
# The `recon serve` page's Three.js comes from npm (pipelines/web/frontend, package-lock.json);
# its browser tests drive Debian's chromium, which `make test` installs when it is missing, as it
# does dicom3tools, whose dciodvfy checks the DICOMs recon writes against the standard's IODs.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
UV := python3 -m uv
# Inside an activated virtual environment (this project's .venv has no pip) python3 would be the
# environment's: leave it, so that uv is installed and run by the system's Python.
ifdef VIRTUAL_ENV
export PATH := $(subst $(VIRTUAL_ENV)/bin:,,$(PATH))
unexport VIRTUAL_ENV
endif

.PHONY: setup demo test lint bench
setup:
	@ldconfig -p | grep -q libusb-1.0 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libusb-1.0-0; }
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --locked --compile-bytecode
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	cd pipelines/web/frontend && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

demo: setup
	$(UV) run --locked recon demo

test: setup
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@command -v dciodvfy >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dicom3tools; }
	$(UV) run --locked ruff check .
	$(UV) run --locked pytest -n 2

bench: setup
	$(UV) run --locked python benchmarks/startup.py
	$(UV) run --locked python benchmarks/geometry.py
