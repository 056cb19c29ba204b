"""CFASL's per-factor symmetry analysis (GIST-IRR/CFASL ``src/analysis_tools/symmetries.py``):
a hand-built codebook whose symmetry has a known effect, and ``disentkit analyze --kind
symmetries`` on a tiny trained CFASL run (PNG + strict JSON) and on a model without a codebook."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from disentkit.registry import MODELS
from disentkit.viz.cfasl_symmetries import SymmetryAnalysisError, factor_symmetries
from toy_plugin import ToyBars, ToyBarsConfig

DIM, SUB, SECTION, SOURCE, TARGET, A = 4, 3, 2, 0, 3, 0.5


def _hand_built_model():
    """A CFASL-beta-VAE whose head always switches section 2 on (and the others off) and whose
    section-2 elements all equal A E[0, 3]: every predicted symmetry is G = exp(A E03) = I + A E03,
    which on a row vector z adds A z_0 to latent 3 and leaves the others alone."""
    cls = MODELS.get("cfasl_betavae")
    torch.manual_seed(0)
    model = cls(cls.Config(latent_dim=DIM, sub_sec=SUB, likelihood="bernoulli", architecture="dlib"),
                (1, 32, 32))
    with torch.no_grad():
        model.codebook.elements.zero_()
        model.codebook.elements[SECTION * SUB:(SECTION + 1) * SUB, SOURCE, TARGET] = A
        model.predictor.linear.weight.zero_()
        bias = torch.zeros(2 * DIM + DIM * SUB)
        on = torch.full((DIM,), -20.0)
        on[SECTION] = 20.0
        bias[0:2 * DIM:2], bias[1:2 * DIM:2] = -on, on  # (off, on) logits per dimension
        model.predictor.linear.bias.copy_(bias)
    return model.eval()


@pytest.fixture(scope="module")
def bars():
    return ToyBars(ToyBarsConfig())  # 32x32 bars, factors x and y with 8 values each


def test_a_hand_built_symmetry_moves_the_latent_it_was_built_to_move(bars):
    model = _hand_built_model()
    result = factor_symmetries(model, bars, np.random.RandomState(3), max_steps=4)
    base = result["base_factors"]
    expected_group = np.eye(DIM)
    expected_group[SOURCE, TARGET] = A
    for entry in result["factors"]:
        f = entry["index"]
        # the walk: the base image with factor f = 0..4, every other factor at the base value
        walk = bars.index_to_factors(entry["image_indices"])
        assert walk[:, f].tolist() == [0, 1, 2, 3, 4]
        assert (np.delete(walk, f, axis=1) == np.delete(base, f)).all()
        np.testing.assert_array_equal(entry["switch_on"], np.eye(DIM)[SECTION])
        np.testing.assert_allclose(entry["mean_group"], expected_group, atol=1e-6)
        # codes computed here, independently of the analysis
        x = torch.as_tensor(bars.uint8_batch(entry["image_indices"])).float().permute(0, 3, 1, 2) / 255
        with torch.no_grad():
            z = model.posterior(x)[0].numpy()
        np.testing.assert_allclose(entry["codes"], z, atol=1e-5)
        once = z[:-1].copy()
        once[:, TARGET] += A * z[:-1, SOURCE]
        np.testing.assert_allclose(entry["once_codes"], once, atol=1e-5)
        # the chain applies G again at every step: z_0 + (j + 1) A z_0,0 on latent 3
        chain = np.repeat(z[:1], 4, axis=0)
        chain[:, TARGET] += A * z[0, SOURCE] * np.arange(1, 5)
        np.testing.assert_allclose(entry["chain_codes"], chain, atol=1e-5)
        moved = np.zeros(DIM)
        moved[TARGET] = A * np.abs(z[:-1, SOURCE]).mean()
        np.testing.assert_allclose(entry["displacement"], moved, atol=1e-5)
        assert entry["aligned_latent"] == TARGET
        np.testing.assert_allclose(entry["error_once"], ((once - z[1:]) ** 2).mean(1), atol=1e-6)
        np.testing.assert_allclose(entry["error_identity"], ((z[:-1] - z[1:]) ** 2).mean(1), atol=1e-6)
        assert entry["images"].shape == (3, 5, 32, 32, 1)
    assert result["displacement"].shape == (2, DIM)


def test_the_analysis_refuses_models_without_a_codebook_and_data_without_factors(bars):
    plain_cls = MODELS.get("betavae")
    plain = plain_cls(plain_cls.Config(latent_dim=DIM, architecture="dlib"), (1, 32, 32))
    with pytest.raises(SymmetryAnalysisError, match="symmetry codebook"):
        factor_symmetries(plain, bars, np.random.RandomState(0))
    with pytest.raises(SymmetryAnalysisError, match="symmetry-steps must be >= 1"):
        factor_symmetries(_hand_built_model(), bars, np.random.RandomState(0), max_steps=0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from disentkit.cli import main

    out = tmp_path_factory.mktemp("cfasl_symmetries")
    # toy bars (32x32, factors x and y): no procedural rendering, so the test stays fast
    assert main(["train", "imports=[toy_plugin]", "data.name=toy_bars", "model.name=cfasl_betavae",
                 "model.latent_dim=4", "model.sub_sec=3", "model.architecture=dlib",
                 "train.batch_size=8", "train.steps=2", "train.num_threads=1", "log.progress=false",
                 "eval.at_end=false", "eval.report_at_end=false", f"out_dir={out}"]) == 0
    return next(out.iterdir())


def _strict(text: str) -> dict:
    def refuse(name: str):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_analyze_symmetries_writes_the_png_and_the_numbers(tiny_run):
    from disentkit.cli import main

    assert main(["analyze", str(tiny_run), "--kind", "symmetries", "--symmetry-steps", "2"]) == 0
    png = tiny_run / "analysis" / "symmetries.png"
    assert png.is_file() and png.stat().st_size > 5000
    numbers = _strict((tiny_run / "analysis" / "symmetries.json").read_text())
    assert numbers["factor_names"] == ["x", "y"]
    assert [f["steps"] for f in numbers["factors"]] == [2, 2]
    latent = numbers["latent_dim"]
    for entry in numbers["factors"]:
        assert np.asarray(entry["mean_group"]).shape == (latent, latent)
        assert np.asarray(entry["factor_probs"]).shape == (latent, numbers["sub_sec"])
        assert len(entry["error_chain"]) == 2 and entry["aligned_latent"] in range(latent)
        assert "images" not in entry


def test_analyze_symmetries_on_a_model_without_codebook_is_one_line(tiny_run, monkeypatch, capsys):
    import disentkit.api
    import disentkit.run_loading
    from disentkit.cli import main

    real = disentkit.api.load_run(tiny_run)
    plain_cls = MODELS.get("betavae")

    class Loaded:
        model = plain_cls(plain_cls.Config(latent_dim=4, architecture="dlib"), (1, 32, 32))

        def data(self):
            return real.data()

    monkeypatch.setattr(disentkit.run_loading, "load_run", lambda path: Loaded())
    assert main(["analyze", str(tiny_run), "--kind", "symmetries"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("disentkit analyze: error:")
    assert "symmetry codebook" in err[0] and "--kind" in err[0]
