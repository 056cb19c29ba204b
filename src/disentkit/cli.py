"""The ``disentkit`` console script. Each subcommand lives in ``disentkit.commands.<name>`` and
registers itself through ``register(subparsers)``, so adding a command means adding one file."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from disentkit import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disentkit",
        description="Train, evaluate and inspect disentangled representation learning models.",
    )
    parser.add_argument("--version", action="version", version=f"disentkit {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also DISENTKIT_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import disentkit.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"disentkit.commands.{info.name}").register(subparsers)
    return parser


def _word_list_dest(parser: argparse.ArgumentParser, command: str | None) -> str | None:
    """The ``dest`` of COMMAND's trailing ``nargs='*'``/``'+'`` positional (its key=value words),
    or None when the command takes no such list."""
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            positionals = [a for a in action.choices[command]._actions if not a.option_strings]
            if positionals and positionals[-1].nargs in ("*", "+"):
                return positionals[-1].dest
    return None


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` taking a command's key=value words wherever they stand.

    argparse gives a ``nargs='*'`` positional only the first run of words, so in
    ``train preset=X --data-root D name=y`` the word ``name=y`` would be "unrecognized"; such
    words (any extra not starting with ``-``) join the command's word list in order. Unknown
    options are still errors.
    """
    args, extras = parser.parse_known_args(argv)
    dest = _word_list_dest(parser, getattr(args, "command", None))
    if dest is not None:
        words = [w for w in extras if not w.startswith("-")]
        setattr(args, dest, [*(getattr(args, dest) or []), *words])
        extras = [w for w in extras if w.startswith("-")]
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("DISENTKIT_DEBUG", "") not in ("", "0")


#: spins of an idle OpenMP thread before it sleeps (libgomp's default is 300,000)
OPENMP_SPIN_COUNT = "30000"
#: 1-minute load average per core above which other jobs are taken to share the cores
BUSY_LOAD_PER_CORE = 0.5
#: what :func:`choose_openmp_waiting` chose on a busy machine; training says it as it starts
#: (not here, so that a usage error stays one line)
WAITING_NOTE: str | None = None


def choose_openmp_waiting() -> str | None:
    """Choose how idle OpenMP threads wait, unless the user chose; returns the note to print.

    libgomp's threads spin 300,000 iterations between parallel regions by default
    (``OMP_WAIT_POLICY`` unset; forever with ACTIVE). On a quiet machine a bounded spin of
    30,000 keeps 92-96% of the best speed where sleeping at once (PASSIVE) halves it
    (``benchmarks/results/thread_policy.md``). On cores that also run other jobs any spin can
    collapse a 2-thread run: with two busy processes per core the 30,000-spin run fell to
    108-117 img/s in 2 of 4 measurements (934-985 in the others), while PASSIVE held 680-848
    (``thread_policy_heavy*.md``). So the machine's 1-minute load average decides at start:
    above ``BUSY_LOAD_PER_CORE`` per core, PASSIVE; else the bounded spin. Only the waiting
    changes, never the thread count, so a run's numbers do not depend on the load.
    ``GOMP_SPINCOUNT`` and ``OMP_WAIT_POLICY`` are left alone when either is set. libgomp reads
    them once, when torch loads it, so this runs before any command imports torch.
    """
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return None
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): assume quiet
        load = 0.0
    if load > BUSY_LOAD_PER_CORE * cores:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return (f"the machine is busy (load average {load:.1f} on {cores} cores): OpenMP "
                "threads sleep when idle (OMP_WAIT_POLICY=PASSIVE); train.num_threads=1 is "
                "faster still on a crowded machine")
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT
    return None


def main(argv: list[str] | None = None) -> int:
    global WAITING_NOTE
    WAITING_NOTE = choose_openmp_waiting()
    from disentkit.errors import UserError, describe_os_error

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"disentkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a bug: one line (train has said where it stopped).
        if debug:
            raise
        print(f"disentkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``disentkit ... | head``): stop quietly, as Unix tools do, and keep
        # the interpreter's final flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:
        message = describe_os_error(err)
        if debug or message is None:
            raise
        print(f"disentkit {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
