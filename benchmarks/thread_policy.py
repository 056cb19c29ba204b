"""Training speed on a busy CPU: torch threads (1 or 2) x OpenMP waiting (``OMP_WAIT_POLICY``
ACTIVE or PASSIVE, or a bounded ``GOMP_SPINCOUNT``), with and without a competing CPU load, in one run.

Each setting trains the quickstart model (``preset=quickstart/sprites``: beta-TCVAE, dlib conv nets,
32x32 sprites, batch 64) for ``--seconds`` of training in a fresh ``disentkit train`` process — the wait
policy must be in the environment before torch loads, so it cannot change inside one process. The
figure is the median of the per-step images/s the run logs (start-up, data rendering and the first
three steps excluded); a setting that collapses under load then costs the same time as any other.

Rounds interleave the settings (every round runs each setting once, in a rotated order), so a
change of background load hits every setting alike. The "loaded" condition starts one busy
process per CPU core (pure-Python spinning, no OpenMP) for the duration of each timed run: what a
shared machine with other users looks like. The background load average at start and end is
recorded, because an "idle" row on a machine shared with other jobs is not idle.

    python benchmarks/thread_policy.py [--seconds 30] [--rounds 2] [--spinners-per-core 1]
                                       [--out thread_policy]

``--spinners-per-core 2`` makes the load heavier (two busy processes per core). Results go to
``benchmarks/results/<out>.{json,md}`` (default ``thread_policy``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
BATCH = 64
#: libgomp waiting at 2 threads: spin forever, sleep at once, libgomp's default spin, shorter spins
TWO_THREAD_POLICIES = ("ACTIVE", "PASSIVE", "spin:300000", "spin:30000", "spin:3000")


def _spin(stop_at: float) -> None:
    """Burn one core until ``stop_at`` (a competing user's job)."""
    x = 0
    while time.time() < stop_at:
        x += 1


def _policy_env(policy: str) -> dict[str, str]:
    """The environment of one setting: ``ACTIVE`` / ``PASSIVE`` set ``OMP_WAIT_POLICY``;
    ``spin:N`` sets ``GOMP_SPINCOUNT=N`` (spin N iterations, then sleep), which libgomp obeys
    whatever the policy. ``spin:300000`` is libgomp's own default for an unset policy; it is set
    explicitly because ``disentkit`` fills an unset ``OMP_WAIT_POLICY`` with its own choice."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(key, None)
    if policy in ("ACTIVE", "PASSIVE"):
        env["OMP_WAIT_POLICY"] = policy
    elif policy.startswith("spin:"):
        env["GOMP_SPINCOUNT"] = policy.split(":", 1)[1]
    else:
        raise ValueError(f"unknown policy {policy!r}")
    return env


def _train(seconds: float, threads: int, policy: str, out: Path, name: str) -> list[float]:
    """Train the quickstart model in a new process for ``seconds`` of training (counted from its
    first logged step) and return the images/s of every logged step after the first three."""
    env = _policy_env(policy)
    cmd = [sys.executable, "-m", "disentkit", "train", "preset=quickstart/sprites",
           "train.steps=100000", "train.checkpoint_every=100000", f"train.num_threads={threads}",
           "eval.at_end=false", "eval.report_at_end=false", "log.every=1",
           f"out_dir={out}", f"name={name}"]
    log = out / name / "metrics.jsonl"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = None
        while proc.poll() is None:
            time.sleep(0.5)
            if started is None and log.exists() and log.stat().st_size > 0:
                started = time.time()
            if started is not None and time.time() - started >= seconds:
                break
    finally:
        proc.kill()
        proc.wait()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [float(r["images_per_s"]) for r in records[3:] if "images_per_s" in r]


def _timed(seconds: float, threads: int, policy: str, loaded: bool, out: Path,
           name: str, per_core: int = 1) -> list[float]:
    spinners: list[mp.Process] = []
    if loaded:
        stop_at = time.time() + 3600
        spinners = [mp.Process(target=_spin, args=(stop_at,), daemon=True)
                    for _ in range(per_core * (os.cpu_count() or 1))]
        for p in spinners:
            p.start()
    try:
        return _train(seconds, threads, policy, out, name)
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="training seconds per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spinners-per-core", type=int, default=1,
                        help="busy processes per core in the loaded condition")
    parser.add_argument("--out", default="thread_policy", help="results file stem")
    parser.add_argument("--policies", nargs="+", default=list(TWO_THREAD_POLICIES),
                        help="2-thread wait policies to measure (ACTIVE, PASSIVE, spin:N)")
    parser.add_argument("--loaded-only", action="store_true",
                        help="measure only with the added load")
    args = parser.parse_args()
    if args.spinners_per_core < 1:
        parser.error(f"--spinners-per-core must be at least 1, got {args.spinners_per_core}")
    load_name = ("one spinner per core" if args.spinners_per_core == 1
                 else f"{args.spinners_per_core} spinners per core")
    # One thread has no parallel region to wait in, so its policy is measured only at both ends.
    for policy in args.policies:
        _policy_env(policy)  # refuses an unknown policy before anything runs
    per_load = [(1, "ACTIVE"), (1, "PASSIVE"), *((2, p) for p in args.policies)]
    conditions = (True,) if args.loaded_only else (False, True)
    settings = [dict(threads=t, policy=p, loaded=lo)
                for lo, (t, p) in itertools.product(conditions, per_load)]
    load_start = os.getloadavg()
    rates: dict[int, list[float]] = {i: [] for i in range(len(settings))}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(range(len(settings)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                s = settings[i]
                step_rates = _timed(args.seconds, s["threads"], s["policy"], s["loaded"],
                                    Path(tmp), f"r{r}-s{i}", args.spinners_per_core)
                rate = statistics.median(step_rates) if step_rates else 0.0
                rates[i].append(rate)
                print(f"round {r} threads {s['threads']} {s['policy']:7s} "
                      f"{load_name if s['loaded'] else 'no added load'}: {rate:.0f} img/s", flush=True)
    load_end = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for i, s in enumerate(settings):
        rows.append({**s, "images_per_s": rates[i], "median": statistics.median(rates[i]),
                     "min": min(rates[i]), "max": max(rates[i])})
    record = {"machine": f"{platform.platform()}; {os.cpu_count()} CPUs", "python": sys.version.split()[0],
              "seconds": args.seconds, "batch": BATCH, "rounds": args.rounds,
              "spinners_per_core": args.spinners_per_core,
              "load_average_start": load_start, "load_average_end": load_end, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Threads x OpenMP wait policy, with and without a competing load "
             "(`benchmarks/thread_policy.py`)", "",
             f"{record['machine']}; quickstart model at batch {BATCH}, {args.seconds:.0f} s of training "
             "per run (median of the per-step images/s after 3 warm-up steps), "
             f"{args.rounds} interleaved rounds. Background load average at start "
             f"{', '.join(f'{v:.1f}' for v in load_start)}, at end "
             f"{', '.join(f'{v:.1f}' for v in load_end)}.", "",
             "| added load | threads | wait policy | img/s (median) | min - max |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {load_name if row['loaded'] else 'none'} | {row['threads']} | "
                     f"{row['policy']} | {row['median']:.0f} | {row['min']:.0f} - {row['max']:.0f} |")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
