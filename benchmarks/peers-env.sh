#!/usr/bin/env bash
# Creates .bench-venv, the environment benchmarks/peers.py runs its contenders in.
#
#     bash benchmarks/peers-env.sh            # then: python benchmarks/peers.py
#
# It is kept apart from .venv so that Ray and Optuna never become dependencies of the
# package, nor constrain its versions. The CPU build of torch goes in first, so that the
# package's torch requirement is already met and pip never pulls a multi-GB CUDA build.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.bench-venv"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -e "$ROOT"
# optuna-integration holds DaskStorage since Optuna moved its integrations out.
"$VENV/bin/python" -m pip install --quiet "ray[tune]" optuna optuna-integration
"$VENV/bin/python" - <<'EOF'
import dask, distributed, optuna, ray, torch
import optuna_integration
import morphml_dask

print(
    f"ready: morphml_dask {morphml_dask.__version__}, dask {dask.__version__},"
    f" ray {ray.__version__}, optuna {optuna.__version__},"
    f" optuna-integration {optuna_integration.__version__}, torch {torch.__version__}"
)
EOF
