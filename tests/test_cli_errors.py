"""The command line turns every error a user can cause into one line with exit status 2, and keeps
the traceback for --debug / DISENTKIT_DEBUG=1 and for errors that are bugs."""

from __future__ import annotations

import argparse
import errno

import pytest

from disentkit import cli
from disentkit.errors import UserError, describe_os_error


def _parser_with(handler):
    parser = argparse.ArgumentParser(prog="disentkit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("boom").set_defaults(handler=handler)
    return parser


def _raise(err: BaseException):
    def handler(_args):
        raise err
    return handler


@pytest.fixture
def boom(monkeypatch):
    def install(err: BaseException) -> None:
        monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(_raise(err)))
    monkeypatch.delenv("DISENTKIT_DEBUG", raising=False)
    return install


def test_user_error_is_one_line_exit_2(boom, capsys) -> None:
    boom(UserError("expected X, found Y; do Z"))
    assert cli.main(["boom"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "disentkit boom: error: expected X, found Y; do Z\n"
    assert "Traceback" not in captured.err


def test_debug_flag_anywhere_and_env_variable_show_the_traceback(boom, monkeypatch) -> None:
    boom(UserError("bad"))
    with pytest.raises(UserError):
        cli.main(["boom", "--debug"])
    monkeypatch.setenv("DISENTKIT_DEBUG", "1")
    with pytest.raises(UserError):
        cli.main(["boom"])


def test_full_disk_and_permission_errors_are_one_line(boom, capsys) -> None:
    boom(OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl"))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "/runs/x/metrics.jsonl" in err
    boom(PermissionError(errno.EACCES, "Permission denied", "/data/dsprites.npz"))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and "truncated" not in err


def test_a_bug_keeps_its_traceback(boom) -> None:
    boom(ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["boom"])
    boom(OSError(errno.EIO, "I/O error"))
    with pytest.raises(OSError):
        cli.main(["boom"])


def test_describe_os_error_leaves_unknown_errors_alone() -> None:
    assert describe_os_error(OSError(errno.EIO, "I/O error")) is None
    assert "read-only" in describe_os_error(OSError(errno.EROFS, "Read-only file system", "/x"))


def test_a_closed_pipe_ends_quietly() -> None:
    import subprocess
    import sys

    # `disentkit presets | head -1`: the reader closes the pipe after one line
    code = ("import sys; from disentkit.cli import main; sys.stdout.reconfigure(line_buffering=True); "
            "sys.exit(main(['presets', '--long']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_settings_a_constructor_refuses_are_one_line_before_training(tmp_path, capsys) -> None:
    # each value is in range, but together they do not fit: sprites orientations must divide 40
    code = cli.main(["train", "preset=betavae/smoke", "data.name=sprites", "data.orientations=7",
                     f"out_dir={tmp_path}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "data.name=sprites does not accept these settings" in lines[0] and "orientations" in lines[0]
    # betatcvae's lambda anneal needs the decomposed objective
    code = cli.main(["train", "preset=betatcvae/smoke", "model.objective=dlib", "model.lambda_anneal_steps=5",
                     f"out_dir={tmp_path}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and "model.name=betatcvae does not accept" in lines[0]
