"""``disentkit eval`` selects the grouped protocols (``--protocol fdae|disdiff`` with ``--groups K``
/ ``--group-size S``) and lowers the attribute split sizes (``--attr-train/--attr-test/--attr-points``)
so a small CelebA-like folder can be scored with the fast preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from disentkit.cli import main

TINY = ["data.orientations=2", "data.positions=4", "train.steps=3", "train.batch_size=8",
        "log.every=3", "log.progress=false", "train.checkpoint_every=3", "eval.preset=fast",
        "eval.at_end=false", "eval.report_at_end=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    # eval.metrics holds beta_vae, which has no FDAE form
    assert main(["train", "preset=quickstart/sprites", f"out_dir={out}", "name=r", *TINY,
                 "eval.metrics=[mig,beta_vae]"]) == 0
    return out / "r"


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_fdae_protocol_scores_equal_groups(run_dir: Path) -> None:
    assert main(["eval", str(run_dir), "--metrics", "mig", "factor_vae", "--preset", "fast",
                 "--protocol", "fdae", "--groups", "5"]) == 0
    res = _results(run_dir)
    cfg = res["config"]
    assert cfg["protocol"] == "fdae"
    assert cfg["groups"] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # latent_dim 10 in 5 chunks
    assert cfg["group_dims"] == 36 // 5  # FDAE's default PCA size per group
    mig = res["metrics"]["mig"]
    assert len(mig["mutual_info"]) == 5  # one k-means label per group, not one per dimension
    assert 0.0 <= mig["discrete_mig"] <= 1.0
    assert 0.0 <= res["metrics"]["factor_vae"]["eval_accuracy"] <= 1.0


def test_fdae_without_metrics_leaves_out_the_runs_metrics_it_has_no_form_of(run_dir: Path) -> None:
    assert main(["eval", str(run_dir), "--preset", "fast", "--protocol", "fdae", "--group-size", "5",
                 "--group-dims", "2"]) == 0
    res = _results(run_dir)
    assert res["evaluated"] == ["mig"]  # the run's [mig, beta_vae] without beta_vae
    assert res["config"]["groups"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert res["config"]["group_dims"] == 2


def test_disdiff_protocol_reduces_each_group_to_one_dimension(run_dir: Path) -> None:
    assert main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast", "--protocol",
                 "disdiff", "--group-size", "2"]) == 0
    res = _results(run_dir)
    cfg = res["config"]
    assert cfg["protocol"] == "disdiff" and len(cfg["groups"]) == 5
    # the PCA is fitted on every image of the 2 x 4 x 4 x ... grid, in index order
    assert cfg["disdiff_fit_points"] > 0
    assert len(res["metrics"]["mig"]["mutual_info"]) == 5
    dlib = main(["eval", str(run_dir), "--metrics", "mig", "--preset", "fast"])
    assert dlib == 0 and len(_results(run_dir)["metrics"]["mig"]["mutual_info"]) == 10


@pytest.mark.parametrize("extra,message", [
    (["--protocol", "fdae"], "give the layout with num_groups (eval --groups K)"),
    (["--protocol", "fdae", "--groups", "3"], "10 dimensions, which do not split into 3 equal groups"),
    (["--groups", "5"], "only the grouped protocols (fdae, disdiff) take --groups (num_groups)"),
    (["--protocol", "disdiff", "--groups", "5", "--group-dims", "2"], "DisDiff reduces every group"),
    (["--protocol", "fdae", "--groups", "5", "--metrics", "beta_vae"],
     "not part of the FDAE protocol"),
    (["--attr-test", "10"], "apply to attribute-labelled data"),
])
def test_bad_protocol_options_are_one_line_errors(run_dir: Path, capsys, extra: list[str],
                                                  message: str) -> None:
    assert main(["eval", str(run_dir), "--preset", "fast", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_group_options_are_checked_by_the_parser(run_dir: Path, capsys) -> None:
    for extra in (["--groups", "0"], ["--groups", "2", "--group-size", "5"]):
        with pytest.raises(SystemExit) as exc:
            main(["eval", str(run_dir), "--protocol", "fdae", *extra])
        assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ---- attribute data: a small CelebA-like folder -------------------------------------------------
NAMES = ["Smiling", "Male", "Eyeglasses", "Young"]


def _write_celeba(root: Path, count: int) -> None:
    """``img_align_celeba/NNNNNN.jpg`` (178 wide, 218 high) and ``list_attr_celeba.txt``; attribute
    a of image i is bit a of i, so every block of 16 images holds both labels of each."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = [str(count), " ".join(NAMES) + " "]
    for i in range(count):
        bits = [1 if (i >> a) & 1 else -1 for a in range(len(NAMES))]
        colour = tuple(int(v) for v in (np.array(bits) > 0)[:3] * 200 + 20)
        Image.new("RGB", (178, 218), colour).save(folder / f"{i + 1:06d}.jpg", quality=90)
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in bits))
    (root / "celeba" / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def celeba_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba_data")
    _write_celeba(root, 64)
    out = tmp_path_factory.mktemp("celeba_runs")
    assert main(["train", "preset=vae/smoke", f"out_dir={out}", "name=c", "data.name=celeba",
                 "data.image_size=32", "data.cache=true", "train.steps=2", "train.batch_size=8",
                 "--data-root", str(root), "eval.at_end=false", "eval.report_at_end=false"]) == 0
    return out / "c"


def test_fast_preset_on_a_small_attribute_folder_needs_smaller_splits(celeba_run: Path, capsys) -> None:
    assert main(["eval", str(celeba_run), "--preset", "fast"]) == 2  # 2000 + 1000 > 64 images
    err = capsys.readouterr().err
    assert "--attr-" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", str(celeba_run), "--preset", "fast", "--attr-train", "40", "--attr-test",
                 "16", "--attr-points", "48"]) == 0
    res = _results(celeba_run)
    params = res["config"]["params"]
    assert res["config"]["preset"] == "fast"
    probe = params["attribute_probe_ap"]
    assert (probe["num_train"], probe["num_test"]) == (40, 16)
    assert (probe["first_train_index"], probe["first_test_index"]) == (8, 48)
    assert params["tad"]["num_points"] == 48 and params["tad"]["first_index"] == 16  # last 48 images
    assert 0.0 <= res["metrics"]["attribute_probe_ap"]["mean_ap"] <= 1.0
    assert np.isfinite(res["metrics"]["tad"]["tad"])
