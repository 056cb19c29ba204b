"""A command line that answers at once: help and usage errors import no heavy library, every
command and argument explains itself, Ctrl-C is one line, and an offline download says where a
file fetched by hand goes."""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from disentkit.cli import build_parser, main
from disentkit.data import files
from disentkit.data.files import FileSpec

HEAVY = ("torch", "numpy", "scipy", "sklearn", "matplotlib", "lightning", "lightning_fabric",
         "PIL", "h5py", "rich")

#: command lines that must answer without importing any of HEAVY (help and usage errors)
FAST = [
    ["--help"],
    ["--version"],
    [],
    ["train", "--help"],
    ["eval", "--help"],
    ["report", "--help"],
    ["sweep", "--help"],
    ["data", "--help"],
    ["data", "download"],  # NAME missing
    ["no-such-command"],
    ["eval"],  # RUN_DIR missing
    ["train", "--no-such-option"],
]

_PROBE = """
import json, sys
heavy = set(json.loads(sys.argv[1]))
def loaded():
    return sorted({m.split('.')[0] for m in sys.modules} & heavy)
import disentkit
report = {"import disentkit": loaded()}
report["eager names"] = sorted({"load_run", "train"} & set(vars(disentkit)))
from disentkit.cli import main
for argv in json.loads(sys.argv[2]):
    try:
        main(argv)
    except SystemExit:
        pass
    report[" ".join(argv) or "(no arguments)"] = loaded()
print(json.dumps(report))
"""


def test_help_and_usage_errors_import_no_heavy_library() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(HEAVY), json.dumps(FAST)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) == len(FAST) + 2
    slow = {argv: mods for argv, mods in report.items() if mods}
    assert slow == {}, f"these imported heavy modules: {slow}"
    # the public names are resolved on first use, and then are the API's own functions
    import disentkit
    import disentkit.api

    assert disentkit.load_run is disentkit.api.load_run and disentkit.train is disentkit.api.train
    assert {"load_run", "train", "__version__"} <= set(dir(disentkit))
    with pytest.raises(AttributeError, match="no_such_name"):
        disentkit.no_such_name  # noqa: B018


def _walk(parser: argparse.ArgumentParser, path: str, missing: list[str]) -> None:
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name} (command)")
                _walk(sub, f"{path} {name}", missing)
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")


def test_every_command_and_argument_has_help(capsys) -> None:
    missing: list[str] = []
    _walk(build_parser(), "disentkit", missing)
    assert missing == []
    # the dataset names of `data download NAME` are filled in when its help is shown
    with pytest.raises(SystemExit):
        main(["data", "download", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the line
    assert "one of: " in out and "dsprites," in out and "{names}" not in out


def test_ctrl_c_is_one_line_with_status_130(monkeypatch, capsys) -> None:
    import disentkit.commands.runs as runs

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "run", interrupted)
    assert main(["runs", "."]) == 130
    assert capsys.readouterr().err == "disentkit runs: interrupted\n"


# ---- offline downloads ----------------------------------------------------------------------------

PAYLOAD = b"disentkit offline test payload\n" * 8


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def _offline(monkeypatch, **spec) -> str:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setitem(files.FILES, "offline_toy", (FileSpec(path="toy/file.bin", url=url + "/file.bin",
                                                               **spec),))
    return url


def test_offline_download_says_where_a_manual_copy_goes(tmp_path: Path, monkeypatch, capsys) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    url = _offline(monkeypatch, size=len(PAYLOAD),
                   checksums={"md5": hashlib.md5(PAYLOAD).hexdigest(), "sha256": sha})
    monkeypatch.chdir(tmp_path)  # a relative --data-root: the message still gives the full path
    assert main(["data", "download", "offline_toy", "--retries", "0", "--data-root", "root"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    line = lines[0]
    assert line.startswith("disentkit data: error: offline_toy: download of ")
    assert f"host 127.0.0.1:{url.rsplit(':', 1)[1]} unreachable" in line
    full = tmp_path / "root" / "toy" / "file.bin"
    assert f"by hand to {full} ({len(PAYLOAD):,} bytes, sha256 {sha})" in line
    assert ".part" not in line and not full.with_name("file.bin.part").exists()


def test_offline_download_names_only_a_part_file_that_exists(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    _offline(monkeypatch, checksums={"md5": hashlib.md5(PAYLOAD).hexdigest()})
    part = tmp_path / "toy" / "file.bin.part"
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:10])  # an earlier download that was cut
    assert main(["data", "download", "offline_toy", "--retries", "0", "--data-root", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert f"the partial file {part} is kept" in line and part.stat().st_size == 10
    assert f"({'size not published'}, md5 {hashlib.md5(PAYLOAD).hexdigest()})" in line
    # an empty .part is not "kept": nothing would be resumed from it
    part.write_bytes(b"")
    assert main(["data", "download", "offline_toy", "--retries", "0", "--data-root", str(tmp_path)]) == 2
    assert ".part" not in capsys.readouterr().err


def test_offline_download_is_one_line_without_waiting_for_retries(tmp_path: Path, monkeypatch,
                                                                  capsys) -> None:
    # a refused connection (as offline) is not retried, even with the default retries
    _offline(monkeypatch)
    waits: list[float] = []
    monkeypatch.setattr(files.time, "sleep", waits.append)
    assert main(["data", "download", "offline_toy", "--data-root", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert waits == [] and len(lines) == 1
    assert "failed after 1 attempt (host 127.0.0.1" in lines[0] and "unreachable" in lines[0]
    assert "(size not published, no checksum published)" in lines[0]


@pytest.mark.parametrize("given, load, expected", [
    ({}, 0.3, {"GOMP_SPINCOUNT": "30000", "OMP_WAIT_POLICY": None}),
    ({}, 1.0, {"GOMP_SPINCOUNT": "30000", "OMP_WAIT_POLICY": None}),  # half of 2 cores: quiet
    ({}, 1.2, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, 3.0, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "ACTIVE"}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, 0.0, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}),
    ({"GOMP_SPINCOUNT": "INFINITE"}, 3.0, {"GOMP_SPINCOUNT": "INFINITE", "OMP_WAIT_POLICY": None}),
])
def test_cli_chooses_openmp_waiting_by_load_unless_told_otherwise(
        monkeypatch: pytest.MonkeyPatch, given: dict[str, str], load: float,
        expected: dict[str, str | None]) -> None:
    """A bounded spin on a quiet machine (PASSIVE halved its speed), sleeping threads on a busy
    one (any spin collapsed a 2-thread run there; benchmarks/results/thread_policy*.md), chosen
    before any command loads torch; a user's own choice is left alone."""
    import os

    for key in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.setenv(key, "")  # records the original value, so what the CLI sets is undone
        monkeypatch.delenv(key)
    for key, value in given.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    from disentkit import cli

    monkeypatch.setattr(cli, "WAITING_NOTE", None)  # restored after the test
    with pytest.raises(SystemExit):
        main(["--version"])
    assert {key: os.environ.get(key) for key in expected} == expected


def test_busy_machine_note_names_the_load_and_the_faster_choice(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from disentkit.cli import choose_openmp_waiting

    for key in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.setenv(key, "")  # records the original value, so what the CLI sets is undone
        monkeypatch.delenv(key)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.9, 2.0, 1.0))
    note = choose_openmp_waiting()
    assert note is not None and "load average 3.9 on 2 cores" in note
    assert "OMP_WAIT_POLICY=PASSIVE" in note and "train.num_threads=1" in note
    monkeypatch.delenv("OMP_WAIT_POLICY")
    from disentkit import cli

    monkeypatch.setattr(cli, "WAITING_NOTE", None)  # restored after the test
    # A usage error stays one line on a busy machine: the note waits for training to start.
    assert main(["train", "preset=quickstart/sprites", "train.steps=-5"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert cli.WAITING_NOTE is not None and "load average 3.9 on 2 cores" in cli.WAITING_NOTE
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert choose_openmp_waiting() is None and os.environ["GOMP_SPINCOUNT"] == "30000"
