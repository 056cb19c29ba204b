"""No silent stretches: piped training logs carry step/total, images/s and ETA; an interrupted run
says where it stopped and how to resume; evaluation and report say what they are doing."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from disentkit import progress
from disentkit.config import load_config
from disentkit.training.checkpoint import load_checkpoint

BASE = [
    "imports=[toy_plugin]",
    "data.name=toy_bars",
    "model.name=betavae",
    "model.latent_dim=4",
    "train.batch_size=8",
    "optim.lr=1e-3",
    "train.num_threads=1",
    "eval.at_end=false",
    "eval.report_at_end=false",
]


@pytest.fixture(autouse=True)
def _python_ctrl_c() -> object:
    """Ctrl-C as Python sets it up in a terminal. A process started in the background of a
    non-interactive shell inherits SIGINT ignored, and the engine rightly leaves an ignored
    SIGINT alone; these tests are about the terminal case."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _config(tmp_path: Path, *extra: str):
    return load_config(None, [*BASE, f"out_dir={tmp_path}", *extra])


def test_clock_and_duration() -> None:
    assert progress.clock(0) == "00:00" and progress.clock(61.4) == "01:01"
    assert progress.clock(3 * 3600 + 5 * 60 + 9) == "3:05:09"
    assert progress.duration(1.234) == "1.2 s" and progress.duration(125) == "02:05"


def test_say_goes_to_stderr_and_quiet_silences_it(capsys, monkeypatch) -> None:
    progress.say("one")
    with progress.quiet():
        progress.say("hidden")
    monkeypatch.setenv("DISENTKIT_QUIET", "1")
    progress.say("hidden too")
    assert capsys.readouterr() == ("", "one\n")


def test_piped_training_lines_show_step_total_rate_and_eta(tmp_path: Path, capsys) -> None:
    from disentkit.training.engine import run_training

    run_training(_config(tmp_path, "train.steps=6", "log.every=2", "log.progress=true", "name=p"))
    err = capsys.readouterr().err  # captured: not a terminal, so plain lines
    lines = [line for line in err.splitlines() if line.startswith("step")]
    pattern = re.compile(r"step ([ \d]+)/6  loss \S+  \d+ img/s  ETA (\d\d:\d\d)$")
    assert [pattern.match(line).group(1).strip() for line in lines] == ["2", "4", "6"], err
    assert pattern.match(lines[-1]).group(2) == "00:00"  # nothing left at the last step


def _stopped_by(trainer, *signals: int):
    """Run ``trainer.fit`` sending ``signals`` to this process as its training loop starts."""
    original = trainer._loop

    def loop_with_signals(loggers):
        for sig in signals:
            os.kill(os.getpid(), sig)  # handled by the engine's handlers
        return original(loggers)

    trainer._loop = loop_with_signals
    return trainer.fit()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_says_where_it_stopped_and_how_to_resume(tmp_path: Path, capsys, sig) -> None:
    """SIGTERM (SLURM) and a first Ctrl-C stop at the end of the step, with a checkpoint."""
    from disentkit.training.engine import Trainer

    run_dir = tmp_path / "sig"
    _stopped_by(Trainer(_config(tmp_path, "train.steps=20", "train.checkpoint_every=100",
                                "log.progress=false"), run_dir), sig)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 1
    assert (f"stopped at step 1/20 (checkpoint saved); resume with: disentkit train --resume {run_dir}"
            in capsys.readouterr().err)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


def test_second_ctrl_c_aborts_at_once_and_says_what_is_kept(tmp_path: Path, capsys) -> None:
    from disentkit.training.engine import Trainer

    run_dir = tmp_path / "twice"
    with pytest.raises(KeyboardInterrupt):
        _stopped_by(Trainer(_config(tmp_path, "train.steps=20", "log.progress=false"), run_dir),
                    signal.SIGINT, signal.SIGINT)
    assert "stopped at step 0/20 before the first checkpoint" in capsys.readouterr().err
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_evaluate_says_each_metric_and_what_it_encoded(capsys) -> None:
    from disentkit.metrics import evaluate
    from test_metrics import make_grid, perfect_rep

    params = {"mig": {"num_train": 32}, "sap": {"num_train": 32, "num_test": 16}}
    evaluate(make_grid(), perfect_rep(), metrics=["mig", "sap"], params=params, n_jobs=1,
             code_cache="off", share_codes=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "eval: mig (1/2) ..."
    assert re.fullmatch(r"eval: mig done in \d+\.\d s, 32 images encoded", lines[1])
    assert lines[2] == "eval: sap (2/2) ..."
    assert re.fullmatch(r"eval: sap done in \d+\.\d s, 48 images encoded", lines[3])
    evaluate(make_grid(), perfect_rep(), metrics=["mig"], params=params, code_cache="grid")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "eval: encoding all 60 images of the factor grid once"
    assert lines[-1].endswith("codes from the cache (no images encoded)")


def test_report_says_each_stage(tmp_path: Path, capsys) -> None:
    from disentkit.viz.report import write_report

    (tmp_path / "empty").mkdir()
    write_report(tmp_path / "empty")
    lines = capsys.readouterr().err.splitlines()
    assert "report: model ..." in lines and "report: traversals ..." in lines
