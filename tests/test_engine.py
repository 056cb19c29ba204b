"""The training engine: exact resume, atomic checkpoints, NaN stop, EMA, schedules, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import disentkit
from disentkit.config import load_config, load_config_file
from disentkit.training.checkpoint import load_checkpoint, save_atomic
from disentkit.training.engine import NonFiniteLossError

BASE = [
    "imports=[toy_plugin]",
    "data.name=toy_bars",
    "model.name=betavae",
    "model.latent_dim=4",
    "model.beta=2",
    "train.batch_size=8",
    "optim.lr=1e-3",
    "log.every=2",
    "log.progress=false",
    "train.num_threads=1",
    "eval.at_end=false",
    "eval.report_at_end=false",
]


def _config(tmp_path: Path, *extra: str):
    if "model.name=toy_ae" in extra:
        base = [x for x in BASE if not x.startswith("model.")]
        return load_config(None, [*base, f"out_dir={tmp_path}", *extra])
    return load_config(None, [*BASE, f"out_dir={tmp_path}", *extra])


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_resume_after_kill_is_exact(tmp_path: Path) -> None:
    """SIGKILL a training process mid-run, resume it, and compare with an unbroken run."""
    args = ["train.steps=300", "train.checkpoint_every=7", "lr_schedule.name=cosine",
            "train.ema_decay=0.9", "log.every=10"]
    full = disentkit.train(_config(tmp_path, *args, "name=full"))
    cmd = [sys.executable, "-m", "disentkit", "train", *BASE, f"out_dir={tmp_path}", *args,
           "name=killed"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= 14:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = load_checkpoint(checkpoint)["step"]
    assert 0 < stopped_at < 300, "the run should have been killed part-way"
    resumed = disentkit.train(load_config_file(tmp_path / "killed" / "config.yaml"),
                              run_dir=tmp_path / "killed", resume=True)
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ema_a = load_checkpoint(full / "checkpoints" / "last.pt")["ema"]
    ema_b = load_checkpoint(resumed / "checkpoints" / "last.pt")["ema"]
    for key in ema_a[""]:
        assert torch.equal(ema_a[""][key], ema_b[""][key]), key
    # The log reads as one run: each logged step once, in order.
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(10, 301, 10))


def test_interrupt_signal_checkpoints_and_resumes(tmp_path: Path) -> None:
    """SIGUSR1 (SLURM pre-emption) makes the engine checkpoint at the next step and stop."""
    from disentkit.training.engine import Trainer

    config = _config(tmp_path, "train.steps=20", "name=sig", "train.checkpoint_every=100")
    trainer = Trainer(config, tmp_path / "sig")
    original = trainer._loop

    def loop_with_signal(loggers):
        trainer._stop_requested = False
        os.kill(os.getpid(), signal.SIGUSR1)  # handled by the engine's handler
        return original(loggers)

    trainer._loop = loop_with_signal
    trainer.fit()
    summary = json.loads((tmp_path / "sig" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert load_checkpoint(tmp_path / "sig" / "checkpoints" / "last.pt")["step"] == 1
    disentkit.train(config, run_dir=tmp_path / "sig", resume=True)
    assert json.loads((tmp_path / "sig" / "summary.json").read_text())["status"] == "finished"


def test_resume_without_flag_refuses_to_overwrite(tmp_path: Path) -> None:
    disentkit.train(_config(tmp_path, "train.steps=2", "name=r"))
    with pytest.raises(FileExistsError, match="--resume"):
        disentkit.train(_config(tmp_path, "train.steps=2", "name=r"))


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_atomic({"step": 1, "w": torch.ones(2)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"step": 2, "bad": Unsaveable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    config = _config(tmp_path, "model.name=toy_ae", "train.steps=10", "train.checkpoint_every=4",
                     "model.nan_at_step=6", "name=nan")
    with pytest.raises(NonFiniteLossError, match="step 6") as info:
        disentkit.train(config)
    assert "last good checkpoint" in str(info.value)
    assert load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")["step"] == 4
    summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_run_directory_contents_and_load_run(tmp_path: Path) -> None:
    run_dir = disentkit.train(_config(tmp_path, "train.steps=4", "name=contents"))
    assert (run_dir / "config.yaml").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "reconstruction", "kl", "kl_per_dim/0", "lr", "images_per_s"} <= records[0].keys()
    model, config = disentkit.load_run(run_dir)
    assert config.model.beta == 2.0
    codes = model.encode(torch.zeros(3, 1, 32, 32))
    assert codes.shape == (3, 4)
    # The saved weights are what load_run gives back.
    for key, value in _weights(run_dir).items():
        assert torch.equal(model.state_dict()[key], value)


def test_grad_clip_bounds_update(tmp_path: Path) -> None:
    """With a tiny clip norm and SGD-like Adam-free check: the clipped run moves less."""
    a = disentkit.train(_config(tmp_path, "model.name=toy_ae", "train.steps=1", "name=noclip",
                                "model.loss_scale=1000", "optim.name=adamw"))
    b = disentkit.train(_config(tmp_path, "model.name=toy_ae", "train.steps=1", "name=clip",
                                "model.loss_scale=1000", "optim.name=adamw", "train.grad_clip=1e-6"))
    # Adam normalises step size, so compare the first-moment estimates (= clipped grads * 0.1).
    ma = load_checkpoint(a / "checkpoints" / "last.pt")["optimisers"][0]["state"][0]["exp_avg"]
    mb = load_checkpoint(b / "checkpoints" / "last.pt")["optimisers"][0]["state"][0]["exp_avg"]
    assert ma.norm() > 1e3 * mb.norm()


def test_cosine_schedule_reaches_floor(tmp_path: Path) -> None:
    run_dir = disentkit.train(_config(tmp_path, "train.steps=8", "lr_schedule.name=cosine",
                                      "lr_schedule.min_lr_ratio=0.1", "name=cos"))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["lr"] == pytest.approx(1e-4)
    assert records[0]["lr"] < 1e-3


def _ddp_toy_args(tmp_path: Path) -> list[str]:
    """The toy run of the multi-process tests (3 steps, logged every step)."""
    toy_base = [x for x in BASE if not x.startswith("model.")]
    return [*toy_base, "model.name=toy_ae", "train.steps=3", "log.every=1", f"out_dir={tmp_path}"]


def _train_single_double_batch(tmp_path: Path) -> Path:
    """One process with batch 16: what two processes of batch 8 must reproduce."""
    result = subprocess.run(
        [sys.executable, "-m", "disentkit", "train", *_ddp_toy_args(tmp_path), "train.batch_size=16",
         "name=single"], capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "single"


def _assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = _weights(a_dir), _weights(b_dir)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test is for POSIX")
def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path: Path) -> None:
    _train_single_double_batch(tmp_path)
    ddp = [*_ddp_toy_args(tmp_path), "train.batch_size=8", "train.devices=2", "train.strategy=ddp",
           "name=ddp"]
    result = subprocess.run([sys.executable, "-m", "disentkit", "train", *ddp],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_weights(tmp_path / "single", tmp_path / "ddp")
    first = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[0])
    first_single = json.loads((tmp_path / "single" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(first_single["loss"], rel=1e-5)


def test_bf16_mixed_precision_trains_on_cpu(tmp_path: Path) -> None:
    run_dir = disentkit.train(_config(tmp_path, "train.steps=4", "train.precision=bf16-mixed",
                                      "name=bf16"))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    # Weights stay float32 under mixed precision.
    assert all(v.dtype == torch.float32 for v in _weights(run_dir).values() if v.is_floating_point())


def test_tensorboard_logging_writes_event_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run_dir = disentkit.train(_config(tmp_path, "train.steps=2", "log.tensorboard=true",
                                      "name=tb"))
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun test is for POSIX")
def test_torchrun_launch_is_detected(tmp_path: Path) -> None:
    """Under torchrun the engine joins the launcher's processes instead of starting its own."""
    toy_base = [x for x in BASE if not x.startswith("model.")]
    args = [*toy_base, "model.name=toy_ae", "train.steps=2", f"out_dir={tmp_path}",
            "train.devices=2", "train.strategy=ddp", "name=trun"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "disentkit", "train", *args],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "trun" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 2


def test_dataset_resident_on_device_gives_the_same_run(tmp_path: Path) -> None:
    """Batches indexed from the device-resident grid equal the host path's batches."""
    a = disentkit.train(_config(tmp_path, "train.steps=3", "name=host"))
    b = disentkit.train(_config(tmp_path, "train.steps=3", "name=dev", "train.data_on_device=true"))
    for key, value in _weights(a).items():
        assert torch.equal(value, _weights(b)[key]), key


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test is for POSIX")
def test_ddp_with_two_optimisers_factorvae(tmp_path: Path) -> None:
    """FactorVAE's VAE and discriminator objectives share one backward, which DDP requires."""
    result = subprocess.run(
        [sys.executable, "-m", "disentkit", "train", "preset=factorvae/smoke", f"out_dir={tmp_path}",
         "name=fv", "train.devices=2", "train.strategy=ddp", "train.steps=4", "log.every=2"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory") == 1  # printed by the main process only
    state = load_checkpoint(tmp_path / "fv" / "checkpoints" / "last.pt")
    assert state["step"] == 4 and len(state["optimisers"]) == 2
    records = [json.loads(x) for x in (tmp_path / "fv" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning is Linux-only")
def test_glibc_malloc_tuning_is_accepted() -> None:
    from disentkit.training.cpu_memory import tune_glibc_malloc

    assert tune_glibc_malloc() is True


def test_rank_is_remembered_after_the_process_group_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs close their process group at the end; rank-0-only printing must still know the rank."""
    from disentkit.training import distributed

    for var in ("RANK", "SLURM_PROCID", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distributed, "_remembered_rank", None)
    assert distributed.global_rank() == 0
    distributed.remember_rank(1)
    assert distributed.global_rank() == 1 and not distributed.is_global_zero()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_signal_handlers_are_restored_after_training(tmp_path: Path) -> None:
    """The stop-at-next-step handler lives only for the loop; afterwards the caller's handler is back."""
    import signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    disentkit.train(_config(tmp_path, "train.steps=1", "name=sig"))
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test is for POSIX")
def test_slurm_two_node_launch_matches_one_process(tmp_path: Path) -> None:
    """Two processes started the way `srun --nodes=2 --ntasks-per-node=1` starts them (SLURM_* variables,
    one task per "node", both on this host) form one DDP run through Fabric's SLURM environment; it
    must train exactly like one process with the doubled batch."""
    import os

    _train_single_double_batch(tmp_path)
    common = _ddp_toy_args(tmp_path)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"))}
        env.update(SLURM_JOB_ID="4242", SLURM_JOB_NAME="disentkit-test", SLURM_NTASKS="2",
                   SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="2", SLURM_NODELIST="127.0.0.1",
                   SLURM_PROCID=str(rank), SLURM_LOCALID="0", SLURM_NODEID=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "disentkit", "train", *common, "train.batch_size=8", "train.devices=1",
             "train.num_nodes=2", "train.strategy=ddp", "name=slurm"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert sum(out.count("run directory") for out, _ in outputs) == 1  # rank 0 only
    _assert_same_weights(tmp_path / "single", tmp_path / "slurm")
    summary = json.loads((tmp_path / "slurm" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 3
