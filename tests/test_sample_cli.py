"""``disentkit sample RUN_DIR``: a PNG grid from a ddpm run (its sampler, EMA weights) and from a
VAE run (decoded prior draws), the same for the same --seed, one line for what cannot work; and a
ddpm run trained end to end through the engine from its smoke preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from disentkit.cli import main

SHORT = ["train.steps=6", "log.every=2"]


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddpm")
    assert main(["train", "preset=ddpm/smoke", f"out_dir={out}", "name=run", *SHORT]) == 0
    return out / "run"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vae")
    assert main(["train", "preset=betavae/smoke", f"out_dir={out}", "name=run", "train.steps=2"]) == 0
    return out / "run"


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_ddpm_smoke_trains_through_the_engine(ddpm_run: Path) -> None:
    records = [json.loads(line) for line in (ddpm_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) for r in records)
    summary = json.loads((ddpm_run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert (ddpm_run / "checkpoints" / "last.pt").is_file()


def test_sample_writes_a_grid_of_the_right_size(ddpm_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "grid.png"
    assert main(["sample", str(ddpm_run), "--n", "6", "--steps", "2", "--out", str(out)]) == 0
    assert "6 samples, ddim, 2 steps, seed 0" in capsys.readouterr().out
    # 6 samples -> 3 columns x 2 rows; 32-px tiles are shown at 64 px with 2-px padding
    assert _pixels(out).shape == (2 * 66 + 2, 3 * 66 + 2, 3)
    assert main(["sample", str(ddpm_run), "--n", "2", "--sampler", "ddpm", "--per-row", "2"]) == 0
    assert _pixels(ddpm_run / "samples.png").shape == (68, 134, 3)


def test_same_seed_same_samples_and_ema_weights_are_used(ddpm_run: Path, tmp_path: Path) -> None:
    paths = {}
    for name, extra in {"a": ["--seed", "3"], "b": ["--seed", "3"], "c": ["--seed", "4"],
                        "raw": ["--seed", "3", "--no-ema"]}.items():
        paths[name] = tmp_path / f"{name}.png"
        assert main(["sample", str(ddpm_run), "--n", "4", "--steps", "3", "--out", str(paths[name]),
                     *extra]) == 0
    a, b, c, raw = (_pixels(paths[k]) for k in ("a", "b", "c", "raw"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, raw)  # the smoke preset keeps an EMA (decay 0.9): a different net


def test_sample_decodes_prior_draws_of_a_vae(vae_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "vae.png"
    assert main(["sample", str(vae_run), "--n", "4", "--seed", "1", "--out", str(out)]) == 0
    assert "decoded prior draws" in capsys.readouterr().out
    assert _pixels(out).shape == (2 * 66 + 2, 2 * 66 + 2, 3)
    again = tmp_path / "again.png"
    assert main(["sample", str(vae_run), "--n", "4", "--seed", "1", "--out", str(again)]) == 0
    assert np.array_equal(_pixels(out), _pixels(again))


def test_diffusion_options_on_a_vae_run_are_one_line(vae_run: Path, capsys) -> None:
    assert main(["sample", str(vae_run), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit sample: error: --steps and --sampler apply to diffusion runs")
    assert err.count("\n") == 1


def test_ddpm_sampler_with_steps_is_one_line(ddpm_run: Path, capsys) -> None:
    assert main(["sample", str(ddpm_run), "--sampler", "ddpm", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "the ddpm sampler runs all T=100 steps" in err and err.count("\n") == 1


def test_eval_of_a_ddpm_run_is_one_line(ddpm_run: Path, capsys) -> None:
    assert main(["eval", str(ddpm_run), "--metrics", "mig"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit eval: error: ddpm has no representation to evaluate")
    assert err.count("\n") == 1


def test_a_folder_without_a_run_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["sample", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err



def test_report_of_a_ddpm_run_shows_samples_and_skips_the_code_sections(ddpm_run: Path,
                                                                         tmp_path: Path) -> None:
    from disentkit.viz.report import write_report

    page = write_report(ddpm_run, tmp_path / "report.html").read_text()
    samples = page.split('<section id="samples">', 1)[1].split("</section>", 1)[0]
    assert "<img" in samples and "ddim, 5 steps" in samples  # the preset's small step budget
    assert "ddpm learns no code" in samples
    for section in ("traversals", "mi", "factors", "reconstructions"):
        assert f'<section id="{section}">' not in page
    assert "not available" not in page and "no results.json yet" not in page


def test_traverse_of_a_ddpm_run_is_one_line(ddpm_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["traverse", str(ddpm_run), "--out", str(tmp_path / "t"), "--no-gif"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("disentkit traverse: error: ddpm has no representation to evaluate")
    assert err.count("\n") == 1
