"""Runs survive failed resumes, damaged checkpoints, NaN stops and full disks (issue 10, 3-6)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch

import disentkit
import toy_plugin
from disentkit.cli import main
from disentkit.config import load_config
from disentkit.training import checkpoint as ck
from disentkit.training.checkpoint import CheckpointError, load_checkpoint, load_latest
from disentkit.training.engine import NonFiniteLossError
from disentkit.training.loggers import JsonlLogger, read_metrics

BASE = [
    "imports=[toy_plugin]", "data.name=toy_bars", "model.name=betavae", "model.latent_dim=4",
    "train.batch_size=8", "optim.lr=1e-3", "log.every=1", "log.progress=false",
    "train.num_threads=1", "eval.at_end=false", "eval.report_at_end=false",
]
TOY = [x for x in BASE if not x.startswith("model.")] + ["model.name=toy_ae"]


def _args(tmp_path: Path, *extra: str, base: list[str] = BASE) -> list[str]:
    return [*base, f"out_dir={tmp_path}", "name=r", *extra]


def _train(tmp_path: Path, *extra: str, base: list[str] = BASE) -> Path:
    return disentkit.train(load_config(None, _args(tmp_path, *extra, base=base)))


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("disentkit train: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


# ---- item 3: a failed resume loses nothing ---------------------------------------------------
def test_shape_changing_override_is_refused_before_anything_is_written(tmp_path, capsys) -> None:
    run = _train(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    before = _files(run)
    assert main(["train", "--resume", str(run), "model.latent_dim=5", "train.steps=6"]) == 2
    line = _error_line(capsys)
    assert "model.latent_dim" in line and "shape" in line
    assert _files(run) == before  # config.yaml, metrics, summary and checkpoints untouched
    # The run is still whole: plain resume, then loading it.
    assert main(["train", "--resume", str(run), "train.steps=6"]) == 0
    assert _steps(run) == [1, 2, 3, 4, 5, 6]
    assert disentkit.load_run(run).config.model.latent_dim == 4


def test_resume_without_last_pt_uses_prev_pt_and_says_so(tmp_path, capsys) -> None:
    run = _train(tmp_path, "train.steps=6", "train.checkpoint_every=2")
    assert load_checkpoint(run / "checkpoints" / "prev.pt")["step"] == 4
    (run / "checkpoints" / "last.pt").unlink()
    assert main(["train", "--resume", str(run), "train.steps=8"]) == 0
    err = capsys.readouterr().err
    assert "last.pt is missing" in err and "prev.pt (step 4)" in err
    assert _steps(run) == list(range(1, 9))  # resumed at 4, not restarted at 0


def test_resume_with_no_checkpoint_at_all_is_refused(tmp_path, capsys) -> None:
    run = _train(tmp_path, "train.steps=3")
    for name in ("last.pt", "prev.pt"):
        (run / "checkpoints" / name).unlink(missing_ok=True)
    before = _files(run)
    assert main(["train", "--resume", str(run)]) == 2
    assert "no checkpoint in" in _error_line(capsys)
    assert _files(run) == before  # metrics.jsonl not truncated


# ---- item 4: corrupted checkpoints are detected and survivable -------------------------------
def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_damaged_last_pt_is_detected_and_prev_pt_loaded(tmp_path, capsys, damage) -> None:
    run = _train(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    last = run / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes({"flip": _flip(data), "truncate": data[: len(data) // 3], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match={"flip": "checksum", "truncate": "truncated",
                                              "empty": "empty"}[damage]):
        load_checkpoint(last)
    loaded = disentkit.load_run(run)
    err = capsys.readouterr().err
    assert "warning:" in err and "last.pt" in err and "prev.pt (step 2)" in err
    prev = load_checkpoint(run / "checkpoints" / "prev.pt")["model"]
    for key, value in prev.items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_resume_from_damaged_last_pt_keeps_an_intact_previous(tmp_path, capsys) -> None:
    run = _train(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(_flip(last.read_bytes()))
    assert main(["train", "--resume", str(run), "train.steps=6"]) == 0
    assert "damaged" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt.damaged").is_file()  # moved aside, not rotated in
    assert load_checkpoint(last)["step"] == 6
    assert load_checkpoint(run / "checkpoints" / "prev.pt")["step"] == 4
    assert _steps(run) == [1, 2, 3, 4, 5, 6]


def test_no_intact_checkpoint_is_one_clear_error(tmp_path) -> None:
    run = _train(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    for name in ("last.pt", "prev.pt"):
        path = run / "checkpoints" / name
        path.write_bytes(_flip(path.read_bytes()))
    with pytest.raises(CheckpointError, match="no intact checkpoint") as info:
        load_latest(run / "checkpoints")
    assert "last.pt" in str(info.value) and "prev.pt" in str(info.value)
    assert "\n" not in str(info.value)


def test_orphaned_temporaries_are_removed_and_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        run = _train(tmp_path, "train.steps=2")
        orphan = run / "checkpoints" / ".last.pt.k1ll3d.tmp"
        orphan.write_bytes(b"half a checkpoint")
        disentkit.train(load_config(None, _args(tmp_path, "train.steps=4")), run_dir=run, resume=True)
    finally:
        os.umask(old)
    assert not orphan.exists()
    for name in ("checkpoints/last.pt", "checkpoints/prev.pt", "summary.json", "config.yaml"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


# ---- item 5: a NaN stop that can be recovered from -------------------------------------------
def _suggested_overrides(message: str, run: Path) -> list[str]:
    command = re.search(r"`disentkit train --resume (\S+) ([^`]*)`", message)
    assert command is not None, message
    assert Path(command.group(1)) == run
    return command.group(2).split()


def test_nan_stop_advice_followed_literally_resumes_with_finite_loss(tmp_path, capsys) -> None:
    # A too high learning rate (reached through the warm-up) explodes at step 2.
    args = _args(tmp_path, "optim.lr=0.3", "lr_schedule.warmup_steps=30", "train.steps=10",
                 "train.checkpoint_every=1")
    assert main(["train", *args]) == 1
    message = _error_line(capsys)
    run = tmp_path / "r"
    assert "step 2" in message and "last good checkpoint" in message
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    overrides = _suggested_overrides(message, run)
    assert main(["train", "--resume", str(run), *overrides]) == 0
    assert "lr 0.3 -> 0.03" in capsys.readouterr().err  # the change is logged
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_lower_lr_written_into_config_yaml_wins_over_the_checkpoint(tmp_path, capsys) -> None:
    args = _args(tmp_path, "optim.lr=0.3", "lr_schedule.warmup_steps=30", "train.steps=10",
                 "train.checkpoint_every=1")
    assert main(["train", *args]) == 1
    run = tmp_path / "r"
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.3", "lr: 0.03"))
    assert main(["train", "--resume", str(run)]) == 0
    rows = read_metrics(run / "metrics.jsonl")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # after step 10 the warm-up is at lr * 11 / 30 of the config's lr, not the checkpoint's
    assert rows[-1]["lr"] == pytest.approx(0.03 * 11 / 30)


def test_last_good_checkpoint_was_written_before_the_exploding_update(tmp_path, monkeypatch) -> None:
    """The update of step 3 makes the weights NaN while its loss is still finite; the step-4
    checkpoint must not be written, the step-2 one is the last good one."""
    original = toy_plugin.ToyAE.training_losses

    def nan_gradient_at_step_3(self, batch, step):
        losses = original(self, batch, step)
        if step == 3:  # sqrt at 0: value 0, gradient 0 * inf = NaN
            losses["loss"] = losses["loss"] + (losses["code_norm"] * 0.0).sqrt()
        return losses

    monkeypatch.setattr(toy_plugin.ToyAE, "training_losses", nan_gradient_at_step_3)
    with pytest.raises(NonFiniteLossError, match="step 4") as info:
        _train(tmp_path, "train.steps=8", "train.checkpoint_every=2", base=TOY)
    assert "(step 2)" in str(info.value)
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_stop_before_any_checkpoint_says_so(tmp_path) -> None:
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet") as info:
        _train(tmp_path, "train.steps=8", "train.checkpoint_every=5", "model.nan_at_step=3", base=TOY)
    assert "last good checkpoint" not in str(info.value)


# ---- item 6: a full disk is an error message, not a broken run -------------------------------
class _FillingHandle:
    """A metrics.jsonl handle whose ``fail_at``-th write stores half its bytes, then ENOSPC."""

    def __init__(self, handle, fail_at: int) -> None:
        self._handle, self._left = handle, fail_at

    def write(self, data) -> int:
        self._left -= 1
        if self._left == 0:
            self._handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)


def test_full_disk_while_logging_is_one_line_and_a_resumable_run(tmp_path, capsys, monkeypatch) -> None:
    real_init = JsonlLogger.__init__

    def filling_init(self, path, resume_step=None):
        real_init(self, path, resume_step)
        self._handle = _FillingHandle(self._handle, fail_at=5)

    monkeypatch.setattr(JsonlLogger, "__init__", filling_init)
    assert main(["train", *_args(tmp_path, "train.steps=8", "train.checkpoint_every=2")]) == 2
    line = _error_line(capsys)
    run = tmp_path / "r"
    assert "no space left" in line and "metrics.jsonl" in line and "--resume" in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert (run / "metrics.jsonl").read_text().endswith("\n")  # no half line left behind
    assert _steps(run) == [1, 2, 3, 4]
    monkeypatch.setattr(JsonlLogger, "__init__", real_init)
    assert main(["train", "--resume", str(run)]) == 0
    assert _steps(run) == list(range(1, 9))


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch) -> None:
    real = ck._write_chunks
    calls = {"n": 0}

    def filling(chunks):
        calls["n"] += 1
        if calls["n"] == 2:
            def fail(handle):
                handle.write(chunks[0])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return fail
        return real(chunks)

    monkeypatch.setattr(ck, "_write_chunks", filling)
    assert main(["train", *_args(tmp_path, "train.steps=8", "train.checkpoint_every=2")]) == 2
    line = _error_line(capsys)
    run = tmp_path / "r"
    assert "no space left" in line and "last.pt" in line and "step 2" in line
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # no temp file


def test_torn_last_line_is_dropped_by_the_reader_and_on_resume(tmp_path, capsys) -> None:
    run = _train(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    log = run / "metrics.jsonl"
    # A run killed while writing step 5's line (past the step-4 checkpoint) leaves half of it.
    log.write_text(log.read_text() + '{"step": 5, "loss": 1.2')
    assert [r["step"] for r in read_metrics(log)] == [1, 2, 3, 4]
    assert "torn last line" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "train.steps=6"]) == 0
    assert "torn last line" in capsys.readouterr().err
    assert _steps(run) == [1, 2, 3, 4, 5, 6]


def test_summary_is_marked_failed_in_place_when_no_temporary_file_fits(tmp_path, monkeypatch) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"status": "running", "step": 30}, indent=2))

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck, "_temporary_beside", full)
    with pytest.raises(OSError):
        ck.write_text_atomic(summary, "{}")
    assert ck.write_text_best_effort(summary, json.dumps({"status": "failed"}))
    assert json.loads(summary.read_text()) == {"status": "failed"}
    assert not ck.write_text_best_effort(tmp_path / "absent.json", "{}")  # never raises
