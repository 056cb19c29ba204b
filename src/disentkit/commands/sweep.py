"""``disentkit sweep preset=P key=a,b,c seed=0:10 --out DIR``: grid x seeds -> numbered runs,
executed locally (one after another or ``--parallel N``) or as a SLURM job array via submitit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="expand a grid of settings x seeds into runs and run them (locally or on SLURM)",
        description=(
            "Example: disentkit sweep preset=betavae/dsprites model.beta=1,2,4,6 seed=0:10 "
            "--out runs/sweep1 --parallel 2. Comma lists and start:stop ranges become axes; "
            "other key=value words are fixed overrides. Re-running skips finished runs and "
            "runs that another live process is training (their run.lock), and resumes "
            "interrupted or crashed ones."
        ),
    )
    parser.add_argument("settings", nargs="+", help="preset=NAME, key=a,b,c, seed=0:10, key=value")
    parser.add_argument("--out", type=Path, required=True, help="sweep folder (runs, sweep.json, logs)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="local runs at the same time: separate processes, each with its own "
                             "run folder, lock and log, sharing the machine and its GPU (each gets "
                             "an N-th of the CPU cores unless OMP_NUM_THREADS is set; "
                             "docs/running_fast.md)")
    parser.add_argument("--executor", default="local", choices=["local", "slurm", "submitit-local"],
                        help="local subprocesses, a SLURM job array (submitit), or submitit's "
                             "local executor")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their state only")
    slurm = parser.add_argument_group("SLURM (--executor slurm)")
    slurm.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--account", default=None, help="SLURM account to charge (default: yours)")
    slurm.add_argument("--time", type=int, default=24 * 60, help="minutes per run")
    slurm.add_argument("--gpus", type=int, default=None,
                       help="GPUs per run (default 1 on SLURM, 0 with submitit-local)")
    slurm.add_argument("--cpus", type=int, default=8, help="CPUs per run")
    slurm.add_argument("--mem-gb", type=int, default=None,
                       help="memory per run in GB (default: the partition's)")
    slurm.add_argument("--array-parallelism", type=int, default=64,
                       help="runs of the job array at the same time at most (default 64)")
    slurm.add_argument("--wait", action="store_true", help="block until the jobs end")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from disentkit.experiments.sweep import (
        execute_local,
        plan_sweep,
        run_status,
        submit_submitit,
    )

    plan = plan_sweep(args.settings, args.out)
    axes = ", ".join(f"{a.key} ({len(a.raw_values)})" for a in plan.axes) or "none"
    stages = f", {len(plan.stages)} upstream stages first" if plan.stages else ""
    print(f"sweep: {len(plan.runs)} runs in {plan.out_dir} (axes: {axes}){stages}")
    if args.dry_run:
        for r in plan.all_runs:
            status = run_status(plan.run_dir(r))
            state = f"{status.state}: {status.detail}" if status.detail else status.state
            after = f"  (after {plan.upstream[r.name]})" if r.name in plan.upstream else ""
            print(f"{plan.label(r)} {r.name}  {state}  {' '.join(r.overrides)}{after}")
        return 0
    if args.executor == "local":
        outcome = execute_local(plan, parallel=args.parallel)
        # a run whose upstream stage failed was not started: the sweep did not complete it
        failed = {k: v for k, v in outcome.items() if v.startswith(("failed", "not started"))}
        elsewhere = [k for k, v in outcome.items() if v == "running elsewhere"]
        print(json.dumps({"runs": len(outcome), "failed": failed, "running_elsewhere": elsewhere},
                         indent=2))
        return 1 if failed else 0
    jobs = submit_submitit(
        plan, cluster="slurm" if args.executor == "slurm" else "local",
        partition=args.partition, time_min=args.time,
        gpus_per_node=args.gpus if args.gpus is not None else int(args.executor == "slurm"),
        cpus_per_task=args.cpus, mem_gb=args.mem_gb, array_parallelism=args.array_parallelism,
        account=args.account, wait=args.wait,
    )
    print(f"submitted {len(jobs)} jobs" + (f": {jobs[0].job_id.split('_')[0]}" if jobs else ""))
    return 0
