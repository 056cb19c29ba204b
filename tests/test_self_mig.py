"""Self-MIG (FDAE paper Eq. 13): a hand-computed case, invariances and the grouped path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from disentkit.errors import ConfigError
from disentkit.metrics.self_mig import self_mig, self_mig_from_discrete


def test_hand_computed_case():
    # a, b independent fair bits; c = a (a copy). 4 points enumerate (a, b).
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 0, 1])
    labels = np.stack([a, b, a], axis=1)
    out = self_mig_from_discrete(labels)
    log2 = math.log(2)
    np.testing.assert_allclose(out["code_entropy"], [log2, log2, log2])
    # a and c share all their information (gap 0); b shares none with either (gap H(b))
    np.testing.assert_allclose(out["per_code"], [0.0, 1.0, 0.0], atol=1e-12)
    assert out["self_mig_max"] == pytest.approx(1.0)
    assert out["self_mig_mean"] == pytest.approx(1 / 3)
    assert out["self_mig"] == out["self_mig_max"]
    assert self_mig_from_discrete(labels, "mean")["self_mig"] == pytest.approx(1 / 3)


def test_partial_dependence_value():
    # q2 = the (a, b) pair on 4 values: H(q2) = 2 ln 2, I(q2; a) = I(q2; b) = ln 2
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 0, 1])
    pair = 2 * a + b
    out = self_mig_from_discrete(np.stack([a, b, pair], axis=1))
    # pair: H = 2 ln2, best other MI = ln2 -> (2 ln2 - ln2) / (2 ln2) = 0.5; a, b: gap 0
    np.testing.assert_allclose(out["per_code"], [0.0, 0.0, 0.5], atol=1e-12)


def test_invariant_to_relabelling_and_code_order():
    rs = np.random.RandomState(0)
    labels = rs.randint(0, 5, size=(500, 4))
    labels[:, 3] = (labels[:, 0] + rs.randint(0, 2, size=500)) % 5  # a partly dependent code
    base = self_mig_from_discrete(labels)
    perm = np.array([2, 0, 3, 1])
    relabelled = (labels[:, perm] * 7 + 3)  # other label values, other order
    moved = self_mig_from_discrete(relabelled)
    np.testing.assert_allclose(moved["per_code"], base["per_code"][perm], atol=1e-12)
    assert moved["self_mig"] == pytest.approx(base["self_mig"])
    assert moved["self_mig_mean"] == pytest.approx(base["self_mig_mean"])


def test_constant_code_scores_zero():
    labels = np.stack([np.array([0, 1, 0, 1]), np.zeros(4, int)], axis=1)
    out = self_mig_from_discrete(labels)
    assert out["per_code"][1] == 0.0  # no information: not a concept
    assert out["per_code"][0] == pytest.approx(1.0)


def test_grouped_codes_separate_and_duplicate_concepts():
    # 4 groups of 3 dims: groups 0-2 driven by independent factors, group 3 a noisy copy of 0.
    rs = np.random.RandomState(1)
    n = 600
    factors = rs.randint(0, 4, size=(n, 3)).astype(float)
    blocks = [np.outer(factors[:, k], rs.randn(3)) + 0.01 * rs.randn(n, 3) for k in range(3)]
    blocks.append(np.outer(factors[:, 0], rs.randn(3)) + 0.01 * rs.randn(n, 3))
    codes = np.concatenate(blocks, axis=1)
    groups = [list(range(3 * g, 3 * g + 3)) for g in range(4)]
    out = self_mig(codes, groups, group_dims=2, num_clusters=4)
    assert out["group_dims"] == 2 and out["num_points"] == n
    assert out["per_code"][1] > 0.9 and out["per_code"][2] > 0.9  # independent concepts
    assert out["per_code"][0] < 0.1 and out["per_code"][3] < 0.1  # the duplicated concept
    assert out["self_mig"] == pytest.approx(out["per_code"].max())
    # default d_r is FDAE's 36 // (number of groups)
    assert self_mig(codes, groups, num_clusters=4)["group_dims"] == 9


def test_bad_reduction_and_shape_are_one_line_errors():
    with pytest.raises(ConfigError, match="reduction must be one of max, mean"):
        self_mig_from_discrete(np.zeros((4, 2), int), reduction="median")
    with pytest.raises(ValueError, match="K >= 2"):
        self_mig_from_discrete(np.zeros((4, 1), int))


def _grid_data():
    from disentkit.data.base import ArrayGroundTruthData

    sizes = (3, 4, 5)
    n = int(np.prod(sizes))
    factors = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)
    images = np.zeros((n, 4, 4, 1), np.uint8)
    images[:, 0, :3, 0] = factors * 50
    return ArrayGroundTruthData(images, ["a", "b", "c"], sizes)


def _grouped_rep(x: np.ndarray) -> np.ndarray:
    """4 groups of 2 dims: factors a, b, c, then a copy of a's group (a duplicated concept)."""
    f = np.rint(x[:, 0, :3, 0] * 255 / 50)
    rot = np.array([[1.0, 0.5], [-0.3, 1.0]])
    blocks = [np.outer(f[:, k], rot[0]) + np.outer(f[:, k] ** 2, rot[1]) for k in range(3)]
    return np.concatenate([*blocks, 2 * blocks[0] + 1], axis=1).astype(np.float32)


def test_suite_metric_under_the_fdae_protocol_shares_migs_draw():
    from disentkit.evaluation import headline_scores
    from disentkit.metrics import evaluate
    from disentkit.metrics.sampling import sample_codes

    data = _grid_data()
    groups = [[0, 1], [2, 3], [4, 5], [6, 7]]
    params = {"mig": {"num_train": 300, "num_clusters": 5}, "self_mig": {"num_train": 300, "num_clusters": 5}}
    both = evaluate(data, _grouped_rep, ["mig", "self_mig"], preset="fast", params=params,
                    protocol="fdae", groups=groups, group_dims=2, code_cache="off")
    alone = evaluate(data, _grouped_rep, ["mig"], preset="fast", params=params, protocol="fdae",
                     groups=groups, group_dims=2, code_cache="off")
    assert both["encoder"]["observations"] == alone["encoder"]["observations"] == 300
    codes, _ = sample_codes(data, _grouped_rep, 300, np.random.RandomState(0), 16)
    direct = self_mig(codes, groups, group_dims=2, num_clusters=5)
    got = both["metrics"]["self_mig"]
    np.testing.assert_allclose(got["per_code"], direct["per_code"])
    assert got["self_mig"] == pytest.approx(direct["self_mig"]) and got["group_dims"] == 2
    assert got["per_code"][0] < 0.05 and got["per_code"][3] < 0.05  # the duplicated concept
    assert headline_scores(both)["self_mig"] == pytest.approx(got["self_mig"])
    # dlib protocol: one histogram-discretised code per dimension
    flat = evaluate(data, _grouped_rep, ["self_mig"], preset="fast", params=params, code_cache="off")
    assert len(flat["metrics"]["self_mig"]["per_code"]) == 8


def _sweep_words(script: str) -> list[list[str]]:
    """The words of every ``disentkit sweep`` command in a shell script (continuations joined)."""
    import shlex

    text = script.replace("\\\n", " ")
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("disentkit sweep")]
    return [[w for w in shlex.split(c)[2:] if not w.startswith("--") and "$" not in w] for c in commands]


def test_the_n_sweep_recipe_plans_one_run_per_n_and_seed(tmp_path, capsys):
    from pathlib import Path

    from disentkit.config import load_config
    from disentkit.experiments.sweep import plan_sweep

    script = (Path(__file__).parent.parent / "examples" / "fdae_n_sweep.sh").read_text()
    cpu, paper = _sweep_words(script)
    plan = plan_sweep(cpu, tmp_path / "cpu")
    configs = [load_config(None, r.overrides) for r in plan.runs]
    assert [c.model.num_concepts for c in configs] == [2, 2, 4, 4, 6, 6]
    assert all(c.eval.at_end and "self_mig" in c.eval.metrics for c in configs)
    plan = plan_sweep(paper, tmp_path / "paper", check=False)
    presets = [next(w for w in r.overrides if w.startswith("preset=")) for r in plan.runs]
    assert presets[::3] == [f"preset=fdae/n_sweep_{n}" for n in (2, 4, 6, 8, 10)]
    assert len(plan.runs) == 15
    capsys.readouterr()  # the paper presets warn that they evaluate in a second step
