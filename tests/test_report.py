"""The HTML run report: parses, every image is a decodable data URI, robust to missing pieces; it
leads with a headline block and ends with the config collapsed; constant series are text; the
three fixed-image traversals are there; collapsed latents are greyed out with their KL."""

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

from disentkit.viz.latents import LatentOrder
from disentkit.viz.plots import constant_series, curve_panels, read_metrics_jsonl
from disentkit.viz.report import SECTIONS, flatten_metrics, mi_from_results, per_factor_mig, write_report
from disentkit.viz.traversal import fixed_indices, mark_collapsed, write_traversals


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


class Node:
    """An element of the parsed page: tag, attributes, children, and its text."""

    def __init__(self, tag: str, attrs: dict, parent: Node | None = None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.chunks: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.chunks) + "".join(c.text for c in self.children)

    def find_all(self, tag: str, **attrs) -> list[Node]:
        out = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                out.append(child)
            out += child.find_all(tag, **attrs)
        return out

    def inside(self, tag: str) -> bool:
        node = self.parent
        while node is not None:
            if node.tag == tag:
                return True
            node = node.parent
        return False


class _Tree(HTMLParser):
    VOID = {"img", "meta", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.root = self.node = Node("#root", {})

    def handle_starttag(self, tag, attrs):
        child = Node(tag, dict(attrs), self.node)
        self.node.children.append(child)
        if tag not in self.VOID:
            self.node = child

    def handle_endtag(self, tag):
        node = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"</{tag}> closes nothing"
        self.node = node.parent

    def handle_data(self, data):
        self.node.chunks.append(data)


def page_tree(path: Path) -> Node:
    parser = _Tree()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.node is parser.root, "unclosed elements"
    return parser.root


def table_rows(table: Node) -> list[list[str]]:
    return [[c.text.strip() for c in tr.children if c.tag in ("td", "th")] for tr in table.find_all("tr")]


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
             "kl_per_dim/0": 0.5, "kl_per_dim/1": s / 20, "beta": 4.0, "lr": 1e-3,
             "images_per_s": 900.0 + s} for s in (10, 20, 30)]
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
    tree = page_tree(path)
    sections = [n.attrs["id"] for n in tree.find_all("section")]
    assert sections[0] == "headline" and sections[-1] == "config"
    assert sections == [key for key, _ in SECTIONS if key in sections]  # the page's fixed order
    # constant series are a line of text, not panels of the curves image
    curves = tree.find_all("section", id="curves")[0]
    (image,) = curves.find_all("img")
    assert "loss" in image.attrs["alt"] and "images/s (machine-dependent)" in image.attrs["alt"]
    assert "beta" not in image.attrs["alt"] and "lr" not in image.attrs["alt"].split(": ")[1]
    (constants,) = curves.find_all("p", **{"class": "constants"})
    assert constants.text == "constant throughout training: beta = 4, lr = 0.001"
    # the config is collapsed inside <details>, at the end
    config = tree.find_all("section", id="config")[0]
    pre = config.find_all("pre")
    assert len(pre) == 1 and pre[0].inside("details") and "betavae" in pre[0].text
    assert all(p.inside("details") for p in tree.find_all("pre"))


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


def test_constant_series_and_curve_panels() -> None:
    rows = [{"step": s, "loss": 10.0 - s, "beta": 4.0, "lr": 1e-3, "kl_per_dim/0": 0.1,
             "kl_per_dim/1": 0.2 * s} for s in range(1, 4)]
    constant = constant_series(rows)
    assert constant == {"beta": 4.0, "lr": 1e-3}
    panels = curve_panels(rows, skip=list(constant))
    assert panels == [("loss", ["loss"]), ("KL per latent", ["kl_per_dim/0", "kl_per_dim/1"])]
    assert constant_series(rows[:1]) == {}  # one row is no series: nothing is called constant


def test_per_factor_mig_is_the_gap_of_each_column() -> None:
    mi = np.array([[0.9, 0.1], [0.2, 0.7], [0.3, 0.6]])
    gaps = per_factor_mig(mi)
    assert [(round(g, 6), top, second) for g, top, second in gaps] == [(0.6, 0, 2), (0.1, 1, 2)]


class _PaintModel(torch.nn.Module):
    """Decodes a code to an image whose brightness is the first code value (for fading checks)."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return ((z[:, :1] + 1) / 2).clamp(0, 1)[:, :, None, None].expand(-1, 1, 4, 4)


def test_collapsed_latents_are_relabelled_and_faded(tmp_path: Path) -> None:
    order = LatentOrder(dims=[2, 0, 1], labels=["z2 a", "z0 b", "z1 c"], criterion="kl")
    marked, muted = mark_collapsed(order, np.array([1.5, 0.004, 0.2]))
    assert muted == [1] and marked.labels == ["z2 a", "z0 b", "z1 KL 0.004 collapsed"]
    assert mark_collapsed(order, None) == (order, [])
    values = torch.tensor([-1.0, 1.0])
    plain = write_traversals(_PaintModel(), tmp_path / "a", marked, modes=("zero",), values=values,
                             gif=False)["zero"][0]
    faded = write_traversals(_PaintModel(), tmp_path / "b", marked, modes=("zero",), values=values,
                             gif=False, muted=muted)["zero"][0]
    a, b = np.asarray(Image.open(plain)).astype(int), np.asarray(Image.open(faded)).astype(int)
    changed = np.argwhere((a != b).any(axis=-1))
    assert changed.size  # only the bottom third (the row of z1) differs, washed towards grey
    assert changed[:, 0].min() > a.shape[0] * 0.6
    where = tuple(changed.T)
    assert (a[where] == 128).all()  # z1's row decodes z0 = 0: mid grey, washed out to light grey
    np.testing.assert_array_equal(b[where], np.round(a[where] * 0.35 + 0.65 * 225))


class _Collapse(torch.nn.Module):
    """Wraps an encoder: latent ``dim``'s posterior becomes the prior (KL exactly 0), the
    others get a tight posterior (KL well above the collapse threshold)."""

    def __init__(self, inner: torch.nn.Module, dim: int) -> None:
        super().__init__()
        self.inner, self.dim = inner, dim

    def forward(self, x):
        mean, logvar = self.inner(x)
        mean, logvar = mean.clone(), torch.full_like(logvar, -4.0)
        mean[:, self.dim], logvar[:, self.dim] = 0.0, 0.0
        return mean, logvar


def test_report_headline_and_collapsed_latents(trained_run: Path, tmp_path: Path, monkeypatch) -> None:
    import disentkit.api
    import disentkit.run_loading
    from disentkit.evaluation import merge_results

    real_load = disentkit.api.load_run

    def load_collapsed(*args, **kwargs):
        run = real_load(*args, **kwargs)
        run.model.encoder = _Collapse(run.model.encoder, 1)
        return run

    monkeypatch.setattr(disentkit.run_loading, "load_run", load_collapsed)
    names = real_load(trained_run).data().factor_names
    mi = np.full((3, len(names)), 0.05)
    mi[1, 0], mi[2, 0] = 0.6, 0.2  # the collapsed z1 "captures" factor 0: histogram noise
    mi[2, 1:] = 0.5
    fresh = {"dataset": "sprites", "representation": "mean",
             "metrics": {"mig": {"discrete_mig": 0.125, "mutual_info": mi.tolist(),
                                 "factor_entropy": [1.0] * len(names)}},
             "config": {"seed": 0, "preset": "fast", "protocol": "dlib", "params": {"mig": {}}}}
    payload, _ = merge_results(None, fresh, step=4)
    (trained_run / "results.json").write_text(json.dumps(payload))
    path = write_report(trained_run, out=tmp_path / "page.html", max_latents=3, steps=4)
    tree = page_tree(path)
    headline = tree.find_all("section", id="headline")[0]
    assert tree.find_all("section")[0] is headline
    facts, scores, per_factor = headline.find_all("table")
    facts = dict(table_rows(facts))
    assert facts["method"] == "betavae, 3 latents" and facts["dataset"] == "sprites"
    assert facts["seed"] == "1" and facts["steps"] == "4 of 4 (finished)"
    assert facts["wall time"].endswith(" s (training loop)")
    assert ["mig", "0.1250", "discrete_mig", "dlib, fast, seed 0, step 4"] in table_rows(scores)
    rows = table_rows(per_factor)[1:]
    assert [r[0] for r in rows] == list(names)
    assert rows[0] == [names[0], "0.4000", "z1 (collapsed)", "z2"]
    assert rows[1] == [names[1], "0.4500", "z2", "z0"]
    assert per_factor.find_all("tr")[1].attrs.get("class") == "collapsed"
    notes = [n.text for n in headline.find_all("p", **{"class": "note"})]
    assert "1 of 3 latents are collapsed (KL < 0.01 nats): z1" in notes
    traversals = tree.find_all("section", id="traversals")[0]
    captions = [c.text for c in traversals.find_all("figcaption")]
    fixed = [c for c in captions if c.startswith("fixed image #")]
    indices = fixed_indices(len(real_load(trained_run).data()), 3)
    assert [c.split(":")[0] for c in fixed] == [f"fixed image #{i}" for i in indices]
    (greyed,) = traversals.find_all("p", **{"class": "collapsed"})
    assert greyed.text.startswith("greyed out: z1 (KL 0.000) are collapsed")
    mi_alt = [i.attrs["alt"] for i in tree.find_all("section", id="mi")[0].find_all("img")]
    assert mi_alt == ["rows: latents (with their KL), columns: factors; grey rows are collapsed latents"]
    entries = table_rows(tree.find_all("section", id="metrics")[0].find_all("table")[1])
    assert entries[1][:2] == ["mig", "dlib, fast, seed 0, step 4"]
