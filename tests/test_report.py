"""The HTML run report: parses, every image is a decodable data URI, robust to missing pieces."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from disentkit.viz.plots import read_metrics_jsonl
from disentkit.viz.report import flatten_metrics, mi_from_results, write_report


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self.notes: list[str] = []
        self._capture: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "h2":
            self._capture = "h2"
        if tag == "p" and attrs.get("class") == "note":
            self._capture = "note"

    def handle_data(self, data):
        if self._capture == "h2":
            self.headings.append(data)
        elif self._capture == "note":
            self.notes.append(data)
        self._capture = None


def parse_report(path: Path) -> _Collector:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    return parser


def decode_images(srcs: list[str]) -> list[Image.Image]:
    out = []
    for src in srcs:
        assert src.startswith("data:image/"), src[:40]
        header, payload = src.split(",", 1)
        assert header.endswith(";base64")
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
        assert header == f"data:image/{image.format.lower()};base64"
        out.append(image)
    return out


def write_metrics(run_dir: Path) -> None:
    rows = [{"step": s, "loss": 100.0 / s, "reconstruction": 90.0 / s, "kl": 1.0 + s / 10,
             "kl_per_dim/0": 0.5, "kl_per_dim/1": s / 20} for s in (10, 20, 30)]
    text = "\n".join(json.dumps(r) for r in rows) + '\n{"step": 40, "loss'  # torn last line
    (run_dir / "metrics.jsonl").write_text(text)


def test_report_without_checkpoint_or_results(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "betavae"}, "seed": 3}))
    (run_dir / "summary.json").write_text(json.dumps({"status": "running", "step": 30}))
    write_metrics(run_dir)
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = parse_report(path)
    assert "Training curves" in page.headings and "Metrics" in page.headings
    images = decode_images(page.images)
    assert len(images) == 1 and images[0].format == "PNG"  # only the curves
    assert any("no results.json" in n for n in page.notes)
    assert any(n.startswith("model: not available") for n in page.notes)
    assert "running" in path.read_text()


def test_report_of_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    page = parse_report(write_report(tmp_path / "empty"))
    assert page.images == []
    assert any("no summary.json" in n for n in page.notes)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_read_metrics_jsonl_skips_torn_line(tmp_path: Path) -> None:
    write_metrics(tmp_path)
    rows = read_metrics_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30]


def test_flatten_metrics_and_mi_from_results() -> None:
    results = {"metrics": {"mig": {"discrete_mig": 0.25, "mutual_info": [[0.5, 0.0], [0.1, 0.3]],
                                   "factor_entropy": [1.0, 0.6]},
                           "dci": {"disentanglement": 0.5, "nested": {"x": 1}}}}
    assert flatten_metrics(results["metrics"]) == {
        "mig.discrete_mig": 0.25, "dci.disentanglement": 0.5, "dci.nested.x": 1.0}
    np.testing.assert_allclose(mi_from_results(results), [[0.5, 0.0], [0.1, 0.5]])
    assert mi_from_results({"metrics": {}}) is None


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    import disentkit
    from disentkit.config import load_config

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    config = load_config("betavae/smoke", ["train.steps=4", "model.latent_dim=3", "seed=1",
                                           f"out_dir={out}", "name=tiny"])
    return disentkit.train(config)


def test_report_of_trained_run(trained_run: Path) -> None:
    # a hand-written MIG entry: the report draws its MI matrix from results.json
    import disentkit

    data_factors = disentkit.load_run(trained_run).data().num_factors
    mi = np.linspace(0, 1, 3 * data_factors).reshape(3, data_factors)
    results = {"metrics": {"mig": {"discrete_mig": 0.125, "mutual_info": mi.tolist(),
                                   "factor_entropy": [1.0] * data_factors}}}
    (trained_run / "results.json").write_text(json.dumps(results))
    path = write_report(trained_run, max_latents=3, steps=4)
    text = path.read_text()
    page = parse_report(path)
    images = decode_images(page.images)
    formats = [im.format for im in images]
    assert formats.count("GIF") == 4  # one animated traversal per mode
    gifs = [im for im in images if im.format == "GIF"]
    assert all(im.n_frames == 4 + 2 for im in gifs)  # 4 values, bounced
    assert "0.1250" in text and "mig.discrete_mig" in text
    assert any("from MIG" in n for n in page.notes)
    for heading in ("Reconstructions", "Latent traversals", "True-factor traversals",
                    "Mutual information between codes and factors"):
        assert heading in page.headings
    assert not [n for n in page.notes if "not available" in n]
    assert (trained_run / "report_files" / "mi_matrix.png").is_file()
