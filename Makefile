# The README's two commands: `make demo` and `make test`; plus `make bench`.
# Each sets itself up on a fresh machine: a .venv with the project and its test tools, and the
# Debian packages that integration tests need (installed only when missing).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Debian packages the integration tests start as real servers; later parts add to this list.
DEBIAN_PACKAGES := openssl prometheus prometheus-alertmanager victoria-metrics docker-compose chromium chromium-driver poppler-utils fonts-noto-cjk

.PHONY: demo test bench lint venv debs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

debs:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/computewatch demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) debs lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
