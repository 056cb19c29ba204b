"""The four CFASL models (GIST-IRR/CFASL ``models/group*.py``): objective wiring, pairing, optimiser groups,
reference-quirk options, smoke presets through the CLI, and mFVM on a trained run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from disentkit.config import load_config, preset_names
from disentkit.registry import MODELS

CFASL_MODELS = ["cfasl_betavae", "cfasl_betatcvae", "cfasl_controlvae", "cfasl_commutativevae"]


def _model(name: str, **params):
    cls = MODELS.get(name)
    base = {"latent_dim": 4, "sub_sec": 3, "likelihood": "bernoulli"}
    if name == "cfasl_commutativevae":
        base.update(architecture="clg", subgroup_sizes=[16], subspace_sizes=[4], forward_eg_prob=0.0)
    else:
        base.update(architecture="dlib")
    if name == "cfasl_betatcvae":
        base["dataset_size"] = 1000
    base.update(params)
    torch.manual_seed(0)
    return cls(cls.Config(**base), (1, 32, 32))


def _batch(size: int = 8) -> torch.Tensor:
    return (torch.rand(size, 1, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.7).float()


@pytest.mark.parametrize("name", CFASL_MODELS)
def test_objective_is_base_plus_weighted_cfasl_terms(name):
    model = _model(name, alpha=0.3, gamma=0.7, lamb=1.3, epsilon=0.05)
    torch.manual_seed(5)
    out = model.training_losses(_batch(), step=0)
    # the decoder term reconstructs the whole batch, the switch term is per pair
    for key in ("codebook_sparsity", "codebook_parallel", "codebook_orthogonal",
                "codebook_commutator", "switch", "equivariance_encoder", "equivariance_decoder"):
        assert torch.isfinite(out[key]) and out[key].ndim == 0, key
    cfasl = (0.3 * (out["codebook_sparsity"] + out["codebook_parallel"] + out["codebook_orthogonal"]
                    + out["codebook_commutator"]) + 0.7 * out["switch"]
             + 1.3 * out["equivariance_encoder"] + 0.05 * out["equivariance_decoder"])
    model0 = _model(name, alpha=0.0, gamma=0.0, lamb=0.0, epsilon=0.0)
    torch.manual_seed(5)
    base = model0.training_losses(_batch(), step=0)["loss"]
    torch.testing.assert_close(out["loss"], base + cfasl, rtol=1e-5, atol=1e-3)
    out["loss"].backward()
    assert model.codebook.elements.grad is not None
    assert model.predictor.linear.weight.grad is not None


def test_decoder_runs_once_on_the_doubled_batch_and_targets_the_swapped_pairs():
    model = _model("cfasl_betavae")
    calls = []
    model.decoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        model.codebook.elements.zero_()  # G = I: transformed codes are [z2 ; z1]
    torch.manual_seed(3)
    out = model.training_losses(_batch(8), step=0)
    assert calls == [16]
    # with G = I the encoder term is MSE(z1, z2) + MSE(z2, z1)
    assert out["symmetry_identity_gap"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["codebook_sparsity"].item() == 0.0


def test_composite_symmetry_and_its_inverse_act_on_the_right_halves():
    """G = exp(A) moves z1 towards z2 and exp(-A) moves z2 towards z1 (one batched matrix_exp
    for both), replayed from the same Gumbel draws in float64."""
    from disentkit.models.symmetry import act, composite_weights

    model = _model("cfasl_betavae").double()
    gen = torch.Generator().manual_seed(4)
    mean, logvar, z = (torch.randn(6, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    torch.manual_seed(5)
    sym = model.symmetry_terms(mean, logvar, z)
    sigma = torch.exp(0.5 * logvar)
    switch_logits, factor_logits = model.predictor(torch.cat([mean[:3], sigma[:3], mean[3:], sigma[3:]], -1))
    torch.manual_seed(5)
    weights, _, _ = composite_weights(switch_logits, factor_logits, model.config.tau)
    algebra = model.codebook.algebra(weights)
    group, inverse = torch.linalg.matrix_exp(algebra), torch.linalg.matrix_exp(-algebra)
    torch.testing.assert_close(sym.group, group, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(sym.transformed[:3], act(z[3:], inverse), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(sym.transformed[3:], act(z[:3], group), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(group @ inverse, torch.eye(4, dtype=torch.float64).expand(3, 4, 4))


def test_odd_batch_is_rejected_with_advice():
    model = _model("cfasl_betavae")
    with pytest.raises(ValueError, match="even batch"):
        model.training_losses(_batch(7), step=0)


def test_head_gets_its_own_learning_rate_and_every_parameter_is_optimised_once():
    model = _model("cfasl_betavae", head_lr=2e-5)
    specs = model.optimiser_specs()
    groups = [g for s in specs for g in s.param_groups]
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    head = [g for g in groups if g.get("lr") == 2e-5]
    assert len(head) == 1
    assert {id(p) for p in head[0]["params"]} == {id(p) for p in model.predictor.parameters()}


def test_cfasl_init_draws_head_biases_from_u01():
    model = _model("cfasl_betavae", init="xavier_u01")
    bias = model.predictor.linear.bias.detach()
    assert bias.min() >= 0.0 and bias.max() <= 1.0 and bias.std() > 0.1
    assert model.decoder.fc[0].bias.detach().min() >= 0.0


def test_betatcvae_weights_mi_and_dwkl_with_their_own_names():
    cfasl = _model("cfasl_betatcvae", alpha=5.0, gamma=7.0, mi_weight=1.0, dwkl_weight=1.0, beta=3.0)
    base_cls = MODELS.get("betatcvae")
    base = base_cls(base_cls.Config(latent_dim=4, architecture="dlib", beta=3.0, dataset_size=1000,
                                    estimator="mss"), (1, 32, 32))
    mean, logvar = torch.randn(8, 4), torch.randn(8, 4) * 0.1
    z = mean + torch.randn(8, 4)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean(0)
    torch.testing.assert_close(cfasl.regulariser(mean, logvar, z, kl, 0, {}),
                               base.regulariser(mean, logvar, z, kl, 0, {}))
    assert cfasl.config.alpha == 5.0  # restored after the call


def test_controlvae_frozen_integral_quirk():
    fixed = _model("cfasl_controlvae", kl_target=0.5, setpoint_schedule="constant")
    quirk = _model("cfasl_controlvae", kl_target=0.5, setpoint_schedule="constant",
                   quirk_frozen_integral=True)
    for step in range(3):
        fixed.training_losses(_batch(), step)
        out = quirk.training_losses(_batch(), step)
    assert fixed.integral.item() != 0.0  # the PI controller integrates
    assert quirk.integral.item() == 0.0
    assert 1.0 <= out["beta"].item() <= 1.0 + 0.01  # beta = 1 + P, P < Kp


def _decoded_sizes(model) -> list[int]:
    sizes: list[int] = []
    model.decoder.post_exp.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    with torch.no_grad():  # a basis large enough that different codes decode differently
        for basis in model.decoder.bases:
            basis.normal_(0.0, 0.3)
    return sizes


def test_clg_decodes_transformed_codes_unless_the_plain_decoder_quirk_is_on():
    model = _model("cfasl_commutativevae")
    sizes = _decoded_sizes(model)
    out = model.training_losses(_batch(8), 0)
    assert sizes == [16]  # [z ; transformed z] through the Lie decoder once
    assert out["equivariance_decoder"].item() != out["reconstruction"].item()
    quirk = _model("cfasl_commutativevae", quirk_clg_plain_decoder_term=True)
    sizes = _decoded_sizes(quirk)
    out = quirk.training_losses(_batch(8), 0)
    assert sizes == [8]  # CF: only z is decoded and its reconstruction counted twice
    assert out["equivariance_decoder"].item() == out["reconstruction"].item()


def test_clg_variant_defaults_follow_the_cfasl_code():
    # CF main.py: hy_commute 20; groupcommutativevae.init_weights: codebook ~ N(0, 1e-6^2)
    cfg = MODELS.get("cfasl_commutativevae").Config()
    assert cfg.hy_commute == 20.0 and cfg.codebook_std == 1e-6
    assert MODELS.get("clgvae").Config().hy_commute == 0.0
    model = _model("cfasl_commutativevae")
    assert model.codebook.elements.abs().max().item() < 1e-5


def test_controlvae_variant_defaults_follow_the_cfasl_code():
    # CF main.py / models/controlvae.py: linear set-point ramp to const_kld 16, beta in [1, 100]
    cfg = MODELS.get("cfasl_controlvae").Config()
    assert (cfg.setpoint_schedule, cfg.kl_target, cfg.beta_min, cfg.beta_max) == ("linear", 16.0, 1.0, 100.0)
    base = MODELS.get("controlvae").Config()
    assert (base.setpoint_schedule, base.beta_max) == ("staircase", None)  # ControlVAE's own code


def test_quirk_flags_change_the_reference_behaviours():
    torch.manual_seed(0)
    x = _batch()
    plain = _model("cfasl_betavae")
    quirky = _model("cfasl_betavae", reference_quirks=True)
    quirky.load_state_dict(plain.state_dict())
    torch.manual_seed(2)
    a = plain.training_losses(x, 0)
    torch.manual_seed(2)
    b = quirky.training_losses(x, 0)
    torch.testing.assert_close(a["reconstruction"], b["reconstruction"])
    assert a["codebook_commutator"].item() != b["codebook_commutator"].item()
    assert a["switch"].item() != b["switch"].item()
    plain.eval()
    quirky.eval()
    torch.testing.assert_close(plain.encode(x), plain.encode(x))
    assert not torch.equal(quirky.encode(x), quirky.encode(x))  # sampled z


def test_every_cfasl_preset_loads_and_clips_gradients_at_one():
    names = [n for n in preset_names() if n.startswith(("cfasl_", "cfasl_baselines/"))]
    assert any(n.startswith("cfasl_baselines/") for n in names)
    for model in CFASL_MODELS:
        assert f"{model}/smoke" in names
        for data in ("dsprites", "shapes3d", "cars3d", "smallnorb", "celeba"):
            assert f"{model}/{data}" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.train.grad_clip == 1.0, name
        assert cfg.train.batch_size % 2 == 0, name


@pytest.mark.parametrize("name", CFASL_MODELS)
def test_smoke_preset_trains_through_the_cli(name, tmp_path):
    from disentkit.cli import main

    code = main(["train", f"preset={name}/smoke", f"out_dir={tmp_path}", "train.steps=6",
                 "log.every=2"])
    assert code == 0
    run = next(tmp_path.iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(math.isfinite(r["loss"]) for r in rows)
    assert all(0.0 <= r["switch_target_on"] <= 1.0 for r in rows)
    # both pseudo-labels occur: some pair dimensions differ by more than th, some not
    assert any(0.0 < r["switch_target_on"] < 1.0 for r in rows)
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from disentkit.cli import main

    out = tmp_path_factory.mktemp("cfasl_run")
    assert main(["train", "preset=cfasl_betavae/smoke", f"out_dir={out}", "train.steps=20"]) == 0
    return next(out.iterdir())


def test_mfvm_on_a_trained_smoke_run(trained_run):
    from disentkit import load_run
    from disentkit.metrics import representation_from_model
    from disentkit.metrics.mfvm import mfvm

    run = load_run(trained_run)
    assert type(run.model).__name__ == "CFASLBetaVAE"
    data = run.data()
    representation = representation_from_model(run.model, device="cpu", batch_size=64)
    result = mfvm(data, representation, np.random.RandomState(0), num_fixed=[2, 3],
                  batch_size=16, num_train=20, num_variance_estimate=64)
    assert set(result) >= {"mfvm_2", "mfvm_3", "mfvm_mean", "num_active_dims"}
    for k in (2, 3):
        assert 0.0 <= result[f"mfvm_{k}"] <= 1.0


# ---- qualitative analyses --------------------------------------------------------------------
def test_sorted_eigen_reorders_columns_with_the_values():
    from disentkit.viz.cfasl_analysis import sorted_eigen

    rotation, _ = np.linalg.qr(np.random.RandomState(0).randn(3, 3))
    cov = rotation @ np.diag([1.0, 3.0, 2.0]) @ rotation.T
    values, vectors = sorted_eigen(cov)
    np.testing.assert_allclose(values, [3.0, 2.0, 1.0])
    np.testing.assert_allclose(cov @ vectors, vectors * values, atol=1e-12)  # columns pair up
    np.testing.assert_allclose(np.abs(vectors[:, 0]), np.abs(rotation[:, 1]), atol=1e-12)


def test_kl_between_posteriors_hand_value():
    from disentkit.viz.cfasl_analysis import kl_between_posteriors

    # KL(N(1, 1) || N(0, e^2)) = 0.5 * (2 - 0 + (1 + 1) / e^2 - 1)
    kl = kl_between_posteriors(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                               torch.tensor([2.0]))
    assert kl.item() == pytest.approx(0.5 * (1 + 2 / math.exp(2)), rel=1e-6)


def test_largest_kld_change_swaps_dimensions_cumulatively(trained_run):
    from disentkit import load_run
    from disentkit.viz.cfasl_analysis import largest_kld_change

    run = load_run(trained_run)
    dim = run.model.latent_dim
    result = largest_kld_change(run.model, run.data(), np.random.RandomState(0), num_pairs=2,
                                top_k=dim)
    images = result["images"]
    assert images.shape[:2] == (2, dim + 4)
    # all dimensions swapped = z2: the last swap step decodes exactly like z2
    np.testing.assert_allclose(images[:, -3], images[:, -2], atol=1e-6)
    assert np.all(np.diff(result["kl"], axis=1) <= 1e-6)  # largest KL first
    assert sorted(result["order"][0].tolist()) == list(range(dim))


def test_analyze_command_writes_the_four_images(trained_run):
    from disentkit.cli import main

    code = main(["analyze", str(trained_run), "--kind", "all", "--num-pairs", "2",
                 "--num-batches", "2", "--batch-size", "16", "--num-points", "64",
                 "--fixed-factors", "1", "2"])
    assert code == 0
    for name in ("largest_kld.png", "eigen.png", "latent3d.png", "latent_sweep.png"):
        path = trained_run / "analysis" / name
        assert path.is_file() and path.stat().st_size > 5000, name
    eigen = np.load(trained_run / "analysis" / "eigen.npz")
    assert np.all(np.diff(eigen["eigenvalues"]) <= 1e-12)
    latent = np.load(trained_run / "analysis" / "latent3d.npz")
    assert latent["codes"].shape == (64, 3)
    assert len(np.unique(latent["factors"][:, 1])) == 1  # the fixed factor holds one value


def test_analyze_all_skips_the_factor_plot_on_data_without_factors(trained_run, monkeypatch, capsys):
    import disentkit.api
    import disentkit.run_loading
    from disentkit.cli import main

    real = disentkit.api.load_run(trained_run)

    class NoFactors:  # the run's images without ground-truth factors (as CelebA)
        def __init__(self, data):
            self._data = data

        def __len__(self):
            return len(self._data)

        def __getattr__(self, name):
            if name in ("factor_sizes", "factor_names"):
                raise AttributeError(name)
            return getattr(self._data, name)

    class Loaded:
        model = real.model

        def data(self):
            return NoFactors(real.data())

    monkeypatch.setattr(disentkit.run_loading, "load_run", lambda path: Loaded())
    out = trained_run / "analysis"
    for png in out.glob("*.png") if out.exists() else []:
        png.unlink()
    assert main(["analyze", str(trained_run), "--kind", "all", "--num-pairs", "2",
                 "--num-batches", "1", "--batch-size", "8", "--sweep-values", "3"]) == 0
    assert "latent3d skipped" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["eigen.png", "largest_kld.png",
                                                         "latent_sweep.png"]
    # asked for explicitly: a clear error and exit status 2
    assert main(["analyze", str(trained_run), "--kind", "latent3d"]) == 2
    assert "has no factors" in capsys.readouterr().err
    assert main(["analyze", str(trained_run), "--kind", "sweep", "--sweep-values", "1"]) == 2
    assert "num_values >= 2" in capsys.readouterr().err


def test_diagonal_sweep_codes_set_latent_d_of_row_d_only():
    from disentkit.viz.cfasl_sweep import diagonal_sweep_codes

    codes = torch.arange(9.0).reshape(3, 3)
    out = diagonal_sweep_codes(codes, torch.tensor([-2.0, 2.0]))
    assert out.shape == (3, 2, 3)
    expected = torch.tensor([[[-2.0, 1, 2], [2.0, 1, 2]],
                             [[3, -2.0, 5], [3, 2.0, 5]],
                             [[6, 7, -2.0], [6, 7, 2.0]]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="one code per latent"):
        diagonal_sweep_codes(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


def test_latent_sweep_rows_are_the_input_then_its_own_dimension_swept(trained_run):
    from disentkit import load_run
    from disentkit.viz.cfasl_sweep import latent_sweep
    from disentkit.viz.images import data_batch

    run = load_run(trained_run)
    model, data = run.model, run.data()
    dim = model.latent_dim
    result = latent_sweep(model, data, np.random.RandomState(0), num_values=4, limit=2.0)
    images = result["images"]
    assert images.shape == (dim, 5, *data.observation_shape)
    np.testing.assert_allclose(result["values"], [-2.0, -2.0 / 3, 2.0 / 3, 2.0], rtol=1e-6)
    x = data_batch(data, result["indices"])
    np.testing.assert_allclose(images[:, 0], x.permute(0, 2, 3, 1).numpy())  # inputs first
    # row 1, last column: image 1's posterior mean with latent 1 set to +2, decoded
    with torch.no_grad():
        code = model.encode(x[1:2]).clone()
        code[0, 1] = 2.0
        expected = model.decode(code)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(images[1, -1], expected, atol=1e-5)
    with pytest.raises(ValueError, match="num_values"):
        latent_sweep(model, data, np.random.RandomState(0), num_values=1)


def test_step_benchmark_script_times_both_models_and_the_parts(tmp_path, monkeypatch):
    """benchmarks/cfasl_step.py on a tiny run: interleaved step times of the models (base, CFASL,
    CFASL without its symmetry terms), ratios, the per-part breakdown and its JSON record."""
    import importlib.util
    import statistics
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cfasl_step.py"
    spec = importlib.util.spec_from_file_location("cfasl_step_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "step.json"
    monkeypatch.setattr(sys, "argv", ["cfasl_step.py", "--batch", "4", "--sub-sec", "2", "--rounds", "2",
                                      "--steps", "1", "--breakdown", "--ablate", "--json", str(out)])
    threads = torch.get_num_threads()
    try:
        module.main()
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.read_text())
    assert len(record["base_ms"]) == len(record["cfasl_ms"]) == len(record["cfasl_no_sym_ms"]) == 2
    assert all(t > 0 for t in record["base_ms"] + record["cfasl_ms"] + record["cfasl_no_sym_ms"])
    ratio = statistics.median(record["cfasl_ms"]) / statistics.median(record["base_ms"])
    assert record["ratio_of_medians"] == pytest.approx(ratio)
    parts = {"parallel loss", "decoder, 2B codes", "all symmetry terms (symmetry_terms)"}
    assert parts <= set(record["parts"])
    assert all(v["min_ms"] <= v["median_ms"] for v in record["parts"].values())
