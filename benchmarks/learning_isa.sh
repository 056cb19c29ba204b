#!/usr/bin/env bash
# The learning tests (pytest -m learning) on each CPU kernel path x {1, 2} intra-op threads.
#
# Float kernels differ between CPUs: PyTorch picks AVX-512, AVX2 or baseline (SSE4.1) code at
# start-up, oneDNN likewise for convolutions, and the thread count changes the order of float sums.
# A training trajectory therefore differs from one machine to the next; the learning tests must
# pass on every one. ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA force a path on this CPU, so one
# machine shows what others would. Settings the CPU cannot run are skipped (PyTorch honours
# ATEN_CPU_CAPABILITY=avx512 even without AVX-512 and dies with SIGILL).
#
#   benchmarks/learning_isa.sh [extra pytest arguments]      # from anywhere; exit 1 if a run failed
#
# Each run prints its settings, wall time, the tests' "learning:" score lines and pytest's summary.
# Results: benchmarks/results/learning_isa.md.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "

has_flags() {
    local flag
    for flag in "$@"; do
        [[ $flags == *" $flag "* ]] || return 1
    done
}

status=0
for setting in "default SSE41" "avx2 AVX2 avx2 fma" "avx512 AVX512_CORE avx512f avx512bw avx512vl avx512dq"; do
    read -r aten onednn needed <<<"$setting"
    for threads in 1 2; do
        label="ATEN_CPU_CAPABILITY=$aten ONEDNN_MAX_CPU_ISA=$onednn threads=$threads"
        # shellcheck disable=SC2086  # $needed is a list of flags
        if ! has_flags $needed; then
            echo "$label: skipped, this CPU lacks ${needed}"
            continue
        fi
        start=$SECONDS
        output=$(ATEN_CPU_CAPABILITY=$aten ONEDNN_MAX_CPU_ISA=$onednn OMP_NUM_THREADS=$threads \
            DISENTKIT_TEST_THREADS=$threads "$python" -m pytest -q -s -m learning -p no:cacheprovider "$@" 2>&1)
        rc=$?
        echo "$label: exit $rc, $((SECONDS - start)) s"
        grep '^learning:' <<<"$output"
        tail -n 1 <<<"$output"
        ((rc == 0)) || status=1
    done
done
exit $status
