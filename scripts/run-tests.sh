#!/usr/bin/env bash
# The whole test suite with the real components its tests start: `make test` runs this, and
# CI (.ci/run) runs `make test`. First it provides what a fresh root machine lacks:
#   - a single-node SLURM (scripts/slurm-local.sh), stopped again when the tests end;
#   - Debian's Chromium, for the dashboard's browser test (scripts/install-chromium.sh);
#   - Debian's Prometheus, for the Grafana dashboard's queries (scripts/install-prometheus.sh).
# The S3 server (moto) and the emulated Kubernetes API (kmock, with the real dask-kubernetes
# operator) come with the test dependencies. A script that exits 2 cannot provide its
# component on this machine (not root, no apt-get): the tests that need it skip and say why,
# unless CI is set, when a skipped test fails the run (tests/conftest.py).
#
#   scripts/run-tests.sh [PYTEST ARGS...]      (PYTEST: the pytest to run, .venv/bin/pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST="${PYTEST:-.venv/bin/pytest}"

provide() {
    local status=0
    "$@" || status=$?
    if [[ $status -ne 0 && $status -ne 2 ]]; then exit "$status"; fi
}

provide scripts/slurm-local.sh start
trap 'scripts/slurm-local.sh stop >/dev/null 2>&1 || true' EXIT
provide scripts/install-chromium.sh
provide scripts/install-prometheus.sh
"$PYTEST" "$@"
