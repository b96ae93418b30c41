# raftka — the two set-up commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEB_PACKAGES := iptables iproute2 faketime procps chromium chromium-driver curl kcat

.PHONY: run test install deb-packages jepsen bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Debian packages the fault-injection tests use; installed only when root and missing.
deb-packages:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root or no apt-get: skipping Debian packages ($(DEB_PACKAGES))"; fi

run: $(STAMP)
	$(VENV)/bin/raftka dev --data-dir ./.raftka-data

## Two worker processes, a test file each at a time: most of a test waits on brokers (elections, timeouts), so
## the run takes about half as long; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) deb-packages
	$(PY) -m pytest -q --durations=15 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

jepsen: $(STAMP) deb-packages
	$(PY) jepsen-style-tests/run.py --full

## Every figure of the performance goals, each with its goal and ratio (bench.goals; JSON under bench/results/, each
## run kept under bench/results/runs/, and `python -m bench.goals --runs DIR...` puts kept runs side by side):
## storage, raftka beside NATS JetStream and confluent-kafka, 64 busy partitions and a 10-minute soak, scale at
## 1k/3k/10k partitions (about 45 min). `make bench BENCH_ARGS=--quick` runs every benchmark short (about 12 min).
bench: $(STAMP)
	$(PIP) install -q -e '.[test,bench]'
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; \
	  else echo "bench needs nats-server (apt-get install nats-server)"; exit 1; fi
	$(PY) -m bench.storage
	$(PY) -m bench.compare $(BENCH_ARGS)
	$(PY) -m bench.partitions $(BENCH_ARGS)
	$(PY) -m bench.raft --skip-throughput $(BENCH_ARGS)
	$(PY) -m bench.goals

clean:
	rm -rf $(VENV) .raftka-data .pytest_cache

## Real docker test of docker/ (image, 3- and 5-broker compose files with brokers killed);
## needs a running docker engine, or root (docker/test.sh installs and starts one). Takes minutes.
.PHONY: docker-test
docker-test: $(STAMP)
	RAFTKA_DOCKER_TESTS=1 $(PY) -m pytest -q -s -m docker tests/test_docker.py
