# The README's two commands: `make demo` and `make test`; plus `make test-fast` and `make bench`.
# Each sets itself up on a fresh machine: a .venv with the project and its test tools, and the
# Debian packages that integration tests need (installed only when missing).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Debian packages the integration tests start as real servers; later parts add to this list.
DEBIAN_PACKAGES := openssl prometheus prometheus-alertmanager victoria-metrics docker-compose chromium chromium-driver poppler-utils fonts-noto-cjk

.PHONY: demo test test-fast test-realtime bench lint venv debs clean protos i18n

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

# The whole suite (what .ci/run calls): every test but those marked realtime on two workers (a
# module stays on one worker, so its servers start once), then the realtime ones.
test: $(STAMP) debs lint
	$(BIN)/python -m pytest -q -m "not realtime" -n 2 --dist loadfile --durations=15
	@$(MAKE) --no-print-directory test-realtime

# The tests that time real clocks (probe schedules, rate limits) and must not share the cores:
# one at a time, while a second pytest runs those that mostly wait beside them (a two-minute
# outage at 0.12 cores); its output follows, and either failing fails the target.
test-realtime: $(STAMP) debs
	@log=$$(mktemp); \
	$(BIN)/python -m pytest -q -p no:cacheprovider -m mostly_waits --durations=5 >$$log 2>&1 & \
	waiting=$$!; \
	$(BIN)/python -m pytest -q -m "realtime and not mostly_waits" --durations=15; status=$$?; \
	wait $$waiting || status=1; \
	echo "--- the realtime tests that mostly wait (-m mostly_waits), run beside them:"; \
	cat $$log; rm -f $$log; exit $$status

# The edit-test loop: all but the tests marked slow (long end-to-end runs), on two workers;
# a module stays on one worker, so its servers start once.
test-fast: $(STAMP) debs lint
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile --durations=10

bench: $(STAMP)
	$(BIN)/python -m bench

# The kubelet PodResources stubs (collectors/kubernetes/_podresources_pb2*.py), committed;
# rerun after editing collectors/kubernetes/_podresources.proto.
protos: $(STAMP)
	$(BIN)/python -m computewatch.collectors.kubernetes._generate

# The message catalogues (computewatch/locale): extract the marked messages into the template,
# merge them into each language's .po (translate the new entries there), compile the .mo files
# the package reads at run time (committed, so a wheel needs no Babel). Sorted and without
# source locations, so that branches adding messages merge cleanly.
LOCALES := zh_CN
i18n: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --sort-output --no-location \
	  -o computewatch/locale/computewatch.pot .
	for l in $(LOCALES); do \
	  $(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -l $$l -D computewatch \
	    -i computewatch/locale/computewatch.pot -d computewatch/locale; done
	$(BIN)/pybabel compile --statistics -D computewatch -d computewatch/locale

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
