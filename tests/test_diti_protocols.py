"""DiTi's evaluation protocols on synthetic codes: the trained linear attribute probe (CelebA AP),
the LFW-style regression probe, and ProbMask (sparse classifier + editing direction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from disentkit.data.files import DataFileError
from disentkit.errors import ConfigError
from disentkit.metrics.attribute_probe import linear_probe_ap, linear_probe_regression
from disentkit.metrics.probmask import (
    edit_codes,
    edit_direction,
    keep_rate,
    project_scores,
    temperature,
    train_probmask_classifier,
)


def _attribute_codes(n: int, seed: int, perfect: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """4 binary ±1 attributes; perfect codes hold them (plus noise dims), random ones do not."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 1], size=(n, 4))
    noise = rng.normal(size=(n, 8))
    codes = np.concatenate([labels + 0.1 * rng.normal(size=(n, 4)), noise], axis=1) if perfect else noise
    return codes.astype(np.float32), labels


def _ap(perfect: bool, **kwargs):
    tr, va, te = (_attribute_codes(n, s, perfect) for n, s in ((384, 0), (96, 1), (96, 2)))
    return linear_probe_ap(*tr, *va, *te, **{"batch_size": 32, **kwargs})


def test_linear_probe_ap_perfect_codes_give_ap_one_random_codes_chance() -> None:
    # 384 rows are 12 batches of 32: a larger step lets 180 Adam steps converge
    perfect, random = _ap(True, lr=1e-2), _ap(False, lr=1e-2)
    assert perfect["mean_ap"] > 0.99
    assert len(perfect["ap_per_attribute"]) == 4 and min(perfect["ap_per_attribute"]) > 0.98
    assert 0.3 < random["mean_ap"] < 0.7  # prevalence 1/2: chance AP is about 0.5
    # the reported epoch is the one with the best validation AP, and its test AP is reported
    assert perfect["best_epoch"] == int(np.argmax(perfect["valid_mean_ap_per_epoch"]))
    assert perfect["mean_ap"] == perfect["test_mean_ap_per_epoch"][perfect["best_epoch"]]
    assert len(perfect["valid_mean_ap_per_epoch"]) == 15


def test_linear_probe_ap_is_seeded_and_leaves_the_global_generator_alone() -> None:
    state = torch.get_rng_state()
    a, b = _ap(False, seed=3, epochs=2), _ap(False, seed=3, epochs=2)
    assert torch.equal(state, torch.get_rng_state())
    assert a["mean_ap"] == b["mean_ap"]
    assert _ap(False, seed=4, epochs=2)["mean_ap"] != a["mean_ap"]


def test_flip_augmentation_mixes_in_the_mirror_codes() -> None:
    """Mirror codes that carry the opposite labels must hurt, so the probe does read them."""
    (x, y), va, te = (_attribute_codes(n, s) for n, s in ((384, 0), (96, 1), (96, 2)))
    plain = linear_probe_ap(x, y, *va, *te, epochs=3, lr=3e-2, batch_size=32)
    flipped = x.copy()
    flipped[:, :4] *= -1
    mixed = linear_probe_ap(x, y, *va, *te, codes_train_flipped=flipped, epochs=3, lr=3e-2, batch_size=32)
    assert plain["mean_ap"] > 0.95 and mixed["mean_ap"] < plain["mean_ap"] - 0.1
    same = linear_probe_ap(x, y, *va, *te, codes_train_flipped=x, epochs=3, lr=3e-2, batch_size=32)
    assert abs(same["mean_ap"] - plain["mean_ap"]) < 0.02


def test_linear_probe_ap_refuses_mismatched_rows_in_one_line() -> None:
    (x, y), va, te = (_attribute_codes(n, s) for n, s in ((16, 0), (8, 1), (8, 2)))
    with pytest.raises(ConfigError, match=r"same N"):
        linear_probe_ap(x, y[:10], *va, *te)


def _regression_codes(n: int, seed: int, perfect: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(n, 6)).astype(np.float32)
    weights = np.random.default_rng(99).normal(size=(6, 5))  # the same map on every split
    targets = codes @ weights if perfect else rng.normal(size=(n, 5))
    return codes, targets


def test_linear_probe_regression_perfect_codes_give_r_one() -> None:
    train, test = _regression_codes(512, 0, True), _regression_codes(128, 1, True)
    result = linear_probe_regression(*train, *test, epochs=15, lr=3e-2, batch_size=32)
    assert result["mean_pearson_r"] > 0.99
    assert result["mean_mse"] < 0.02 * test[1].var(axis=0).mean()
    assert result["select_on"] == "valid" and result["num_valid"] == 51 and result["num_train"] == 461
    assert result["best_epoch"] == int(np.argmax(result["valid_mean_pearson_r_per_epoch"]))
    noise = linear_probe_regression(*_regression_codes(512, 0, False), *_regression_codes(128, 1, False))
    assert abs(noise["mean_pearson_r"]) < 0.2


def test_linear_probe_regression_reference_mode_picks_the_epoch_on_test() -> None:
    train, test = _regression_codes(256, 0, False), _regression_codes(64, 1, False)
    ref = linear_probe_regression(*train, *test, select_on="test", epochs=6)
    per_epoch = ref["test_mean_pearson_r_per_epoch"]
    assert ref["best_epoch"] == int(np.argmax(per_epoch)) and ref["mean_pearson_r"] == max(per_epoch)
    assert len(ref["test_mean_mse_per_epoch"]) == 6 and "num_valid" not in ref
    # NaN target rows (LFW images without scores) are left out, not scored as zeros
    codes, targets = test
    targets = targets.copy()
    targets[:4] = np.nan
    assert linear_probe_regression(*train, codes, targets, select_on="test", epochs=1)["num_test"] == 60
    with pytest.raises(ConfigError, match=r"select_on must be 'valid' or 'test'"):
        linear_probe_regression(*train, *test, select_on="train")


def test_probmask_schedules_follow_the_reference_formulas() -> None:
    assert temperature(0, 100) == pytest.approx(1.0)
    assert temperature(100, 100) == pytest.approx(1 / 0.03)
    assert keep_rate(9, 100, 16 / 512) == 1.0
    assert keep_rate(10, 100, 0.25) == pytest.approx(1.0)
    assert keep_rate(25, 100, 0.25) == pytest.approx(0.25 + 0.75 * 0.5**3)
    assert keep_rate(40, 100, 0.25) == 0.25 and keep_rate(99, 100, 0.25) == 0.25
    scores = torch.linspace(0.0, 1.0, 64)
    projected = project_scores(scores, 10.0)
    assert abs(float(projected.sum()) - 10.0) < 1e-2 and projected.min() >= 0
    assert torch.equal(project_scores(torch.full((8,), 0.1), 4.0), torch.full((8,), 0.1))


def test_probmask_finds_the_attribute_dimension_and_edits_along_it() -> None:
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(512, 32)).astype(np.float32) * 3 + 1
    labels = (codes[:, 5] > 1).astype(np.int64)  # the attribute lives in dimension 5 only
    out = train_probmask_classifier(codes, labels, keep=4, epochs=10, batch_size=16, lr=3e-2, seed=0)
    assert out["mask"][5] == 1 and 2 <= int(out["mask"].sum()) <= 7
    assert abs(out["mask_sums"][-1] - 4) < 0.1  # scores projected to keep-rate 4/32
    direction = edit_direction(out["weight"], out["mask"])
    assert int(torch.argmax(direction.abs())) == 5 and (direction[out["mask"] == 0] == 0).all()
    z = torch.as_tensor(codes[:4])
    edited = edit_codes(z, out["mean"], out["std"], direction, 0.3)
    step = (edited - z) / out["std"]  # in standardised units: 0.3 * sqrt(32) along the direction
    assert torch.allclose(step, 0.3 * 32**0.5 * direction.expand_as(step), atol=1e-4)
    with pytest.raises(ConfigError, match=r"both values"):
        train_probmask_classifier(codes, np.ones(512), keep=4)


class _LabelledImages:
    """4 binary attributes drawn as bright pixels in the left column of 4x4 grey images and their
    opposites in the right column, so a mirrored image (what the flip augmentation encodes) shows
    the "encoder" the opposite labels."""

    name = "labelled"
    value_max = 255

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.attributes = rng.choice([-1, 1], size=(n, 4)).astype(np.int8)
        self.images = np.zeros((n, 4, 4, 1), np.uint8)
        self.images[:, :, 0, 0] = np.where(self.attributes > 0, 255, 0)
        self.images[:, :, 1:3, 0] = rng.integers(0, 60, size=(n, 4, 2))
        self.images[:, :, 3, 0] = np.where(self.attributes > 0, 0, 255)  # the opposite labels

    def __len__(self) -> int:
        return len(self.attributes)

    def uint8_from_indices(self, indices: np.ndarray) -> np.ndarray:
        return self.images[np.asarray(indices)]


def _left_column(batch: np.ndarray) -> np.ndarray:
    return np.asarray(batch)[:, :, 0, 0] * 4 - 2  # what the "encoder" sees: the left column only


def test_eval_suite_scores_the_linear_probe_on_index_ordered_splits() -> None:
    from disentkit.metrics import evaluate_attributes

    data = _LabelledImages(600)
    common = {"preset": "fast", "num_train": 400, "num_test": 100, "num_points": 200}
    out = evaluate_attributes(data, _left_column, probe="linear", **common,
                              params={"linear_probe_ap": {"batch_size": 32, "lr": 1e-2, "flip": False}})
    assert set(out["metrics"]) == {"tad", "linear_probe_ap"}  # binary labels, linear probe asked for
    params = out["config"]["params"]["linear_probe_ap"]
    assert (params["num_train"], params["num_valid"], params["num_test"]) == (360, 40, 100)
    assert (params["first_train_index"], params["first_test_index"]) == (100, 500)
    assert out["metrics"]["linear_probe_ap"]["mean_ap"] > 0.99
    # with flips, about half the training rows are mirrored images showing the opposite labels
    flipped = evaluate_attributes(data, _left_column, metrics=["linear_probe_ap"], **common,
                                  params={"linear_probe_ap": {"batch_size": 32, "lr": 1e-2}})
    assert flipped["config"]["params"]["linear_probe_ap"]["flip"] is True
    assert flipped["metrics"]["linear_probe_ap"]["mean_ap"] < 0.9
    closed = evaluate_attributes(data, _left_column, **common)
    assert set(closed["metrics"]) == {"tad", "attribute_probe_ap"}
    with pytest.raises(ConfigError, match=r"num_valid must be between 1 and 399"):
        evaluate_attributes(data, _left_column, metrics=["linear_probe_ap"], **common,
                            params={"linear_probe_ap": {"num_valid": 400}})


def _celeba_run(root: Path, count: int = 64) -> Path:
    """A CelebA folder in the real layout (178x218 JPEGs, list_attr_celeba.txt) and an untrained
    vae/smoke run on it, written by hand (no training needed to score a representation)."""
    from PIL import Image

    from disentkit.builders import build_dataset, build_model
    from disentkit.config import load_config, save_config
    from disentkit.models.base import DataFacts
    from disentkit.training.checkpoint import save_atomic

    names = ["Smiling", "Male", "Young"]
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines = [str(count), " ".join(names) + " "]
    for i in range(count):
        bits = [1 if (i >> a) & 1 else -1 for a in range(len(names))]
        colour = tuple(200 if b > 0 else 30 for b in bits)
        Image.new("RGB", (178, 218), colour).save(folder / f"{i + 1:06d}.jpg")
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in bits))
    (root / "celeba" / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    config = load_config("vae/smoke", ["data.name=celeba", "data.image_size=32", f"data_root={root}"])
    facts = DataFacts.of(build_dataset(config))
    torch.manual_seed(0)
    model = build_model(config, facts)
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(config, run / "config.yaml")
    save_atomic({"model": model.state_dict(), "data_facts": facts.to_dict()}, run / "checkpoints" / "last.pt")
    return run


def test_eval_cli_linear_probe_and_reference_epoch_selection(tmp_path: Path, capsys) -> None:
    import json

    from disentkit import cli

    run = _celeba_run(tmp_path)
    sizes = ["--attr-train", "40", "--attr-test", "16", "--attr-points", "48"]
    assert cli.main(["eval", str(run), "--probe", "linear", *sizes]) == 0
    results = json.loads((run / "results.json").read_text())
    assert set(results["evaluated"]) == {"tad", "linear_probe_ap"}
    probe = results["metrics"]["linear_probe_ap"]
    assert len(probe["valid_mean_ap_per_epoch"]) == 15 and 0 <= probe["best_epoch"] < 15
    assert results["entries"]["linear_probe_ap"]["params"]["num_valid"] == 4
    assert "| linear_probe_ap |" in capsys.readouterr().out
    assert cli.main(["eval", str(run), "--metrics", "linear_probe_regression", "--select-epoch-on",
                     "test", *sizes]) == 0
    regression = json.loads((run / "results.json").read_text())["metrics"]["linear_probe_regression"]
    assert regression["select_on"] == "test" and regression["num_train"] == 40
    per_epoch = regression["test_mean_pearson_r_per_epoch"]
    assert regression["mean_pearson_r"] == max(per_epoch)


#: the 73 attribute names of lfw_attributes.txt (Kumar et al.), in the file's order
LFW_NAMES = (
    "Male|Asian|White|Black|Baby|Child|Youth|Middle Aged|Senior|Black Hair|Blond Hair|Brown Hair|"
    "Bald|No Eyewear|Eyeglasses|Sunglasses|Mustache|Smiling|Frowning|Chubby|Blurry|Harsh Lighting|"
    "Flash|Soft Lighting|Outdoor|Curly Hair|Wavy Hair|Straight Hair|Receding Hairline|Bangs|"
    "Sideburns|Fully Visible Forehead|Partially Visible Forehead|Obstructed Forehead|Bushy Eyebrows|"
    "Arched Eyebrows|Narrow Eyes|Eyes Open|Big Nose|Pointy Nose|Big Lips|Mouth Closed|"
    "Mouth Slightly Open|Mouth Wide Open|Teeth Not Visible|No Beard|Goatee|Round Jaw|Double Chin|"
    "Wearing Hat|Oval Face|Square Face|Round Face|Color Photo|Posed Photo|Attractive Man|"
    "Attractive Woman|Indian|Gray Hair|Bags Under Eyes|Heavy Makeup|Rosy Cheeks|Shiny Skin|"
    "Pale Skin|5 o' Clock Shadow|Strong Nose-Mouth Lines|Wearing Lipstick|Flushed Face|"
    "High Cheekbones|Brown Eyes|Wearing Earrings|Wearing Necktie|Wearing Necklace"
).split("|")


def _lfw_folder(root: Path) -> Path:
    """lfw_funneled/<Name>/<Name>_NNNN.jpg, lfw_attributes.txt (2 header lines, tab-separated,
    person, imagenum, 73 scores) and the two dev people lists, in the real formats."""
    from PIL import Image

    folder = root / "lfw" / "lfw_funneled"
    for name, count in (("Ann_Lee", 2), ("Bo_Li", 1), ("Cy_Xu", 1)):
        for k in range(1, count + 1):
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (250, 250), (40 * k, 90, 160)).save(folder / name / f"{name}_{k:04d}.jpg")
    rows = [("Ann Lee", 1, 0.5), ("Ann Lee", 2, -1.25), ("Bo Li", 1, 2.0)]  # Cy Xu has no scores
    lines = ["# Label Attribute Data (Kumar et al.)", "#\tperson\timagenum\t" + "\t".join(LFW_NAMES)]
    lines += [f"{p}\t{n}\t" + "\t".join(f"{v + 0.01 * a:.5f}" for a in range(73)) for p, n, v in rows]
    (root / "lfw" / "lfw_attributes.txt").write_text("\n".join(lines) + "\n")
    (root / "lfw" / "peopleDevTrain.txt").write_text("2\nAnn_Lee\t2\nCy_Xu\t1\n")
    (root / "lfw" / "peopleDevTest.txt").write_text("2\nBo_Li\t1\nDe_Ng\t1\n")  # De Ng: no image
    return folder


def test_lfw_dev_split_with_diti_resize_and_centre_crop(tmp_path: Path) -> None:
    from disentkit.data.images import LFW, read_lfw_attributes

    folder = _lfw_folder(tmp_path)
    assert len(LFW_NAMES) == 73
    names, table = read_lfw_attributes(tmp_path / "lfw" / "lfw_attributes.txt")
    assert names == LFW_NAMES and table[("Ann Lee", 2)][3] == pytest.approx(-1.22)
    data = LFW(LFW.Config(path=str(folder), crop="resize_center", split="dev"), data_root=tmp_path)
    assert [p.name for p in data.files] == ["Ann_Lee_0001.jpg", "Ann_Lee_0002.jpg", "Bo_Li_0001.jpg"]
    assert data.attributes.shape == (3, 73) and data.attributes[2, 0] == pytest.approx(2.0)
    assert data.attribute_partition["train"].tolist() == [0, 1]
    assert data.attribute_partition["test"].tolist() == [2]
    assert data.uint8_from_indices(np.array([0])).shape == (1, 64, 64, 3)
    (tmp_path / "lfw" / "peopleDevTest.txt").write_text("3\nBo_Li\t1\n")
    with pytest.raises(DataFileError, match=r"announces 3 people, 1 follow"):
        LFW(LFW.Config(path=str(folder), split="dev"), data_root=tmp_path)


def test_resize_center_is_torchvision_resize_then_centre_crop() -> None:
    from PIL import Image

    from disentkit.data.images import preprocess

    pixels = np.random.default_rng(0).integers(0, 255, size=(200, 100, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)  # 100 wide, 200 high: the width becomes 70, the height 140
    expected = np.asarray(image.resize((70, 140), Image.Resampling.BILINEAR).crop((3, 38, 67, 102)))
    assert np.array_equal(preprocess(image, "resize_center", 0, 64), expected)


def test_linear_probes_use_a_data_sets_own_partition() -> None:
    from disentkit.metrics import evaluate_attributes

    data = _LabelledImages(300)
    data.attribute_partition = {"train": np.arange(200), "test": np.arange(200, 300)}
    out = evaluate_attributes(data, _left_column, metrics=["linear_probe_regression"],
                              params={"linear_probe_regression": {"select_on": "test", "epochs": 2}})
    params = out["config"]["params"]["linear_probe_regression"]
    assert (params["first_test_index"], params["num_test"]) == (200, 100)
    assert out["metrics"]["linear_probe_regression"]["num_train"] == 200  # test mode: all fit rows
