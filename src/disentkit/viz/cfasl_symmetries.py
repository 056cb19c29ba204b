"""CFASL's per-factor symmetry analysis (Jung, Jeong & Kim 2024; GIST-IRR/CFASL
``src/analysis_tools/symmetries.py``), for the CFASL models of :mod:`disentkit.models.cfasl`.

What the learnt symmetries do to each ground-truth factor:

1. One random base image (its factor values). For each factor f, the images whose factors equal
   the base except factor f = 0, 1, ..., n-1 (n = the factor's size, at most ``max_steps + 1``;
   CF uses every value, Cars3D capped at 27 steps).
2. Each consecutive pair (value j, value j + 1) goes through the model's symmetry head exactly
   as a training pair does ([mu1, sigma1, mu2, sigma2] -> switches and factor probabilities ->
   G_j = exp(sum_{s,p} switch_s softmax_s(p) g_{s,p})), so G_j is the composite symmetry the model
   predicts for "factor f one step up".
3. *Once*: z_j G_j for every j (each step from the true code of value j); *chain*: z_0 G_0 G_1 ...
   G_j (the walk along the factor from value 0 using only predicted symmetries). Both are
   decoded next to the true images.
4. Numbers per factor: the mean G, the switch-on rate and mean factor probabilities per section
   (CF's averaged "group action" and "attention"), the mean displacement |z_j G_j - z_j| per
   latent dimension (which latents the factor's symmetry moves; a factor-aligned model moves one)
   and the squared errors of the once / chain predictions against the true codes z_{j+1}, with
   the no-symmetry baseline |z_j - z_{j+1}|^2.

Differences from CF (documented in docs/cfasl.md): the codes are posterior means unless
``sampled`` (CF's encoder always samples); the switches are the more probable state of each
switch unless ``sample_switches`` (CF draws a Gumbel-softmax sample at tau = 1e-4, which is
that state with the softmax's probability), so the analysis is deterministic; CF divides the
averages by a constant 10, not done here; CF's two random-pair composition images are not part
of this analysis (``largest-kld`` shows random pairs).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentkit.errors import UserError
from disentkit.models.symmetry import act, composite_weights
from disentkit.viz.cfasl_analysis import _images, _pyplot, posterior_codes

__all__ = ["SymmetryAnalysisError", "factor_symmetries", "pair_symmetries", "plot_symmetries",
           "symmetries_json"]


class SymmetryAnalysisError(UserError, ValueError):
    """The run or the options cannot give the symmetry analysis (not a CFASL model, data without
    ground-truth factors, a step count below 1)."""


def require_symmetries(model: Any) -> None:
    """Raise :class:`SymmetryAnalysisError` unless ``model`` has CFASL's codebook and head."""
    if not (hasattr(model, "codebook") and hasattr(model, "predictor") and hasattr(model, "posterior")):
        raise SymmetryAnalysisError(
            f"the symmetry analysis reads CFASL's symmetry codebook, which {type(model).__name__} "
            "does not have; use a CFASL run (cfasl_betavae, cfasl_betatcvae, cfasl_controlvae, "
            "cfasl_commutativevae) or another --kind (largest-kld, eigen, latent3d, sweep)"
        )


@torch.no_grad()
def pair_symmetries(model: Any, mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
                    logvar2: torch.Tensor, sample_switches: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(G (n, D, D), switches (n, D), factor probabilities (n, D, P)) of pairs 1 -> 2 through the
    model's head, as in training (the ``quirk_sigma2_from_mean`` option included).

    ``sample_switches=False``: each switch is its more probable state (the tau -> 0 Gumbel-softmax
    mode), so the result is deterministic; True draws as training does (torch's generator)."""
    sigma1 = torch.exp(0.5 * logvar1)
    quirk = bool(model.config.reference_quirks or getattr(model.config, "quirk_sigma2_from_mean", False))
    sigma2 = torch.exp(0.5 * (mean2 if quirk else logvar2))
    switch_logits, factor_logits = model.predictor(torch.cat([mean1, sigma1, mean2, sigma2], -1))
    if sample_switches:
        weights, switches, probs = composite_weights(switch_logits, factor_logits, model.config.tau)
    else:
        switches = (switch_logits[..., 1] > switch_logits[..., 0]).to(mean1.dtype)
        probs = torch.softmax(factor_logits, dim=-1)
        weights = switches.unsqueeze(-1) * probs
    group = torch.linalg.matrix_exp(model.codebook.algebra(weights))
    return group, switches, probs


def _factor_walk(data: Any, base: np.ndarray, factor: int, values: int) -> np.ndarray:
    """Indices of the images equal to ``base`` except ``factor`` = 0 .. values - 1."""
    factors = np.repeat(base[None, :], values, axis=0)
    factors[:, factor] = np.arange(values)
    return np.asarray(data.factors_to_index(factors), dtype=np.int64)


@torch.no_grad()
def _one_factor(model: Any, data: Any, indices: np.ndarray, sampled: bool,
                sample_switches: bool) -> dict[str, np.ndarray]:
    """The once / chain walks, their decodings and the per-factor numbers of one factor's images
    ``indices`` (values 0 .. n-1 in order)."""
    x = _images(model, data, indices)
    mean, logvar, z = posterior_codes(model, x, sampled)
    group, switches, probs = pair_symmetries(model, mean[:-1], logvar[:-1], mean[1:], logvar[1:],
                                             sample_switches)
    once = act(z[:-1], group)  # z_j G_j, should be z_{j+1}
    chain, code = [], z[:1]
    for step in range(group.shape[0]):
        code = act(code, group[step : step + 1])
        chain.append(code)
    chain_codes = torch.cat(chain)  # z_0 G_0 ... G_j
    decoded = model.decode(torch.cat([z[:1], once, z[:1], chain_codes]))
    steps = group.shape[0]
    images = torch.stack([x, decoded[: steps + 1], decoded[steps + 1 :]])  # (3, n, C, H, W)
    target = z[1:]
    return {
        "images": images.permute(0, 1, 3, 4, 2).cpu().numpy(),
        "codes": z.cpu().numpy(),
        "once_codes": once.cpu().numpy(),
        "chain_codes": chain_codes.cpu().numpy(),
        "groups": group.cpu().numpy(),
        "mean_group": group.mean(0).cpu().numpy(),
        "switch_on": switches.mean(0).cpu().numpy(),
        "factor_probs": probs.mean(0).cpu().numpy(),
        "displacement": (once - z[:-1]).abs().mean(0).cpu().numpy(),
        "error_once": (once - target).pow(2).mean(1).cpu().numpy(),
        "error_chain": (chain_codes - target).pow(2).mean(1).cpu().numpy(),
        "error_identity": (z[:-1] - target).pow(2).mean(1).cpu().numpy(),
    }


@torch.no_grad()
def factor_symmetries(model: Any, data: Any, random_state: np.random.RandomState,
                      max_steps: int = 10, sampled: bool = False, sample_switches: bool = False
                      ) -> dict[str, Any]:
    """The per-factor symmetry analysis (module docstring).

    Returns ``{"base_factors", "base_index", "factor_names", "factors": [per factor: "index",
    "name", "values", "image_indices", "steps" and, with steps >= 1, the arrays of the module
    docstring ("images" (3, n, H, W, C): true images, once, chain), "aligned_latent"],
    "displacement" (F, D), "switch_on" (F, D)}``; a factor with one value has ``steps`` 0 and
    NaN rows."""
    require_symmetries(model)
    sizes = list(getattr(data, "factor_sizes", None) or [])
    if not sizes:
        raise SymmetryAnalysisError(
            f"the symmetry analysis walks along ground-truth factors, but dataset "
            f"'{getattr(data, 'name', type(data).__name__)}' has none; use a ground-truth dataset "
            "(dsprites, shapes3d, cars3d, smallnorb, sprites, ...)")
    if max_steps < 1:
        raise SymmetryAnalysisError(f"--symmetry-steps must be >= 1 (pairs per factor), got {max_steps}")
    model.eval()
    names = list(getattr(data, "factor_names", None) or [f"factor {i}" for i in range(len(sizes))])
    base = np.asarray(data.sample_factors(1, random_state)[0], dtype=np.int64)
    dim = int(model.codebook.latent_dim)
    factors, displacement, switch_on = [], np.full((len(sizes), dim), np.nan), \
        np.full((len(sizes), dim), np.nan)
    for f, size in enumerate(sizes):
        values = min(int(size), max_steps + 1)
        indices = _factor_walk(data, base, f, values)
        entry: dict[str, Any] = {"index": f, "name": str(names[f]), "values": list(range(values)),
                                 "image_indices": indices, "steps": values - 1}
        if values >= 2:
            entry.update(_one_factor(model, data, indices, sampled, sample_switches))
            entry["aligned_latent"] = int(np.argmax(entry["displacement"]))
            displacement[f], switch_on[f] = entry["displacement"], entry["switch_on"]
        factors.append(entry)
    return {"base_factors": base, "base_index": int(data.factors_to_index(base[None, :])[0]),
            "factor_names": names, "factors": factors, "displacement": displacement,
            "switch_on": switch_on, "codes": "sampled" if sampled else "mean",
            "switches": "sampled" if sample_switches else "most probable",
            "latent_dim": dim, "sub_sec": int(model.codebook.sub_sec)}


# ---------------------------------------------------------------------------------------------
# Output: JSON of the numbers, one PNG
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-ready: arrays to lists, NaN to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def symmetries_json(result: dict[str, Any], path: Path) -> Path:
    """Write the numbers of :func:`factor_symmetries` (not the images) as JSON."""
    skip = {"images"}
    payload = {
        "analysis": "symmetries (GIST-IRR/CFASL src/analysis_tools/symmetries.py)",
        **{k: v for k, v in result.items() if k != "factors"},
        "factors": [{k: v for k, v in f.items() if k not in skip} for f in result["factors"]],
    }
    path.write_text(json.dumps(_plain(payload), indent=1) + "\n")
    return path


def _mosaic(result: dict[str, Any], pad: int = 2) -> tuple[np.ndarray, list[str]]:
    """All factors' (true, once, chain) rows as one image, with a label per row."""
    walks = [f for f in result["factors"] if f["steps"] >= 1]
    height, width, channels = walks[0]["images"].shape[2:]
    cols = max(f["images"].shape[1] for f in walks)
    rows = 3 * len(walks)
    canvas = np.ones((rows * (height + pad) + pad, cols * (width + pad) + pad, 3))
    labels = []
    for w, walk in enumerate(walks):
        for r, label in enumerate(("true", "once", "chain")):
            row = 3 * w + r
            labels.append(f"{walk['name']}: {label}" if r == 0 else label)
            for c, image in enumerate(walk["images"][r]):
                top, left = pad + row * (height + pad), pad + c * (width + pad)
                tile = np.clip(image, 0.0, 1.0)
                canvas[top : top + height, left : left + width] = tile[..., :3] if channels >= 3 \
                    else np.repeat(tile[..., :1], 3, -1)
    return canvas, labels


def plot_symmetries(result: dict[str, Any], path: Path) -> Path:
    """One PNG: per factor the true walk, the once and chain decodings; below, the mean
    displacement per latent and the switch-on rate per section, factor by factor."""
    if not any(f["steps"] >= 1 for f in result["factors"]):
        raise SymmetryAnalysisError("every factor of this dataset has a single value; there is no "
                                    "step to analyse")
    plt = _pyplot()
    canvas, labels = _mosaic(result)
    names = result["factor_names"]
    dim = result["displacement"].shape[1]
    mosaic_h = 6.6 * canvas.shape[0] / canvas.shape[1]  # the image axes' width, not the figure's
    width = 8.0
    fig = plt.figure(figsize=(width, mosaic_h + 0.35 * len(names) + 2.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[mosaic_h, 0.35 * len(names) + 1.2])
    ax = fig.add_subplot(grid[0, :])
    ax.imshow(canvas, interpolation="nearest")
    row_h = canvas.shape[0] / len(labels)
    ax.set_yticks([row_h * (i + 0.5) for i in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=6)
    ax.set_xticks([])
    ax.set_title("per factor: true images (values 0, 1, ...), z_j G_j decoded (once), "
                 "z_0 G_0 ... G_j decoded (chain)", fontsize=8)
    panels = (("mean |z G - z| per latent (row-normalised)", result["displacement"], "magma"),
              ("switch on (fraction of steps)", result["switch_on"], "viridis"))
    for col, (title, values, cmap) in enumerate(panels):
        hax = fig.add_subplot(grid[1, col])
        shown = np.nan_to_num(values)  # a factor with one value: an empty row
        if col == 0:
            scale = shown.max(axis=1, keepdims=True)
            shown = np.divide(shown, scale, out=np.zeros_like(shown), where=scale > 0)
        image = hax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        hax.set_xticks(range(dim))
        hax.set_xticklabels([f"z{d}" for d in range(dim)], fontsize=6)
        hax.set_yticks(range(len(names)))
        hax.set_yticklabels(names, fontsize=6)
        hax.set_title(title, fontsize=8)
        fig.colorbar(image, ax=hax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keep the long factor-name labels
    plt.close(fig)
    return path
