#!/usr/bin/env bash
# The one-shot GPU check (issue 16): at most 8 minutes on a CUDA machine, results in
# benchmarks/results/gpu_<device>.json (see benchmarks/gpu_check.py for the sections).
#
#   benchmarks/gpu_check.sh            # on the GPU machine
#   benchmarks/gpu_check.sh --dry      # tiny sizes on the CPU, in seconds (a test runs this)
#
# Needs nothing but the project and its installed packages (procedural data, no network).
# The driver keeps to its own budget (460 s); the timeout is the backstop of the 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=TERM --kill-after=15 "${GPU_CHECK_LIMIT_S:-480}" \
    "$PYTHON" benchmarks/gpu_check.py "$@"
