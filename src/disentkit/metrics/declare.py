"""Metric declarations: everything the suite, the tables and the presets need to know about a
metric, stated next to its definition.

A metric module decorates its protocol-level function with :func:`declare_metric`, which
registers it in :data:`~disentkit.registry.METRICS` and attaches a :class:`MetricDeclaration`:

* ``headline`` -- the key of its result dict that tables show (``disentkit runs``, the report,
  ``headline_scores``);
* ``presets`` -- its parameters per evaluation preset (``{"study": {...}, "fast": {...}}``);
* ``shared_code`` -- it replays dlib's ``generate_batch_factor_code`` stream, so ``evaluate``
  serves its draws from the shared code cache; its module then defines
  ``draw_sizes(**params) -> [n, ...]`` and ``score_draws(draws, random_state, **params)``;
* ``fdae`` -- its form under FDAE's protocol (None: it has none; see :class:`MetricDeclaration`);
* ``planned`` -- how many observations it encodes (for metrics that draw their own);
* ``parallel`` -- it takes ``n_jobs``; ``order`` -- its column position in tables.

The central places (:func:`disentkit.metrics.evaluate`, ``PRESETS``, ``FDAE_METRICS``,
``disentkit.evaluation.HEADLINE``) are read-only views over these declarations, so a metric
registered by a plugin module appears everywhere once its module is imported.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from disentkit.registry import METRICS

__all__ = ["MetricDeclaration", "declare_metric", "declaration", "declarations", "fdae_metrics",
           "headline_keys", "preset_table", "HeadlineView", "PresetView", "NameView"]

#: the ``fdae`` forms that are not a callable
FDAE_FORMS = ("reduced", "fit_transform")

#: metric kinds: ``factors`` (ground-truth factor grid, :func:`~disentkit.metrics.evaluate`) and
#: ``attributes`` (labelled images, :func:`~disentkit.metrics.evaluate_attributes`)
KINDS = ("factors", "attributes")

_DECLARED: dict[str, MetricDeclaration] = {}


@dataclass(frozen=True)
class MetricDeclaration:
    """What one metric declares (module docstring).

    ``fdae``: ``"reduced"`` scores the per-group PCA codes of its shared draws with its
    ``score_draws``; a callable ``fdae(reduced_draws, reducer, random_state, params) -> result``
    does its own scoring of those draws (MIG's k-means, DCI's learning rate);
    ``"fit_transform"``: the metric draws its own codes and takes a ``fit_transform`` argument
    (``codes -> reducer``) fitted on its own sample (FactorVAE's variance codes).
    """

    name: str
    headline: str
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    shared_code: bool = False
    fdae: str | Callable[..., dict[str, Any]] | None = None
    planned: Callable[[dict[str, Any], int], int] | None = None
    parallel: bool = False
    order: float = 1000.0
    kind: str = "factors"
    module: str = ""

    def sizes(self, preset: str) -> dict[str, Any]:
        """A fresh copy of this metric's parameters under ``preset`` (empty when undeclared)."""
        return copy.deepcopy(dict(self.presets.get(preset, {})))

    def _shared(self, attr: str) -> Callable[..., Any]:
        fn = getattr(sys.modules.get(self.module), attr, None)
        if not self.shared_code or fn is None:
            raise TypeError(f"metric {self.name!r} declares shared_code but its module "
                            f"{self.module} defines no {attr}()")
        return fn

    def draw_sizes(self, **params: Any) -> list[int]:
        """The consecutive ``sample_codes`` draws it makes (shared-code metrics)."""
        return list(self._shared("draw_sizes")(**params))

    def score_draws(self, draws: list, random_state: Any, **params: Any) -> dict[str, Any]:
        """Its score of already drawn ``(codes, factors)`` draws (shared-code metrics)."""
        return self._shared("score_draws")(draws, random_state, **params)


def _check(decl: MetricDeclaration) -> None:
    """Programming errors in a declaration fail at import, not mid-evaluation."""
    if not isinstance(decl.headline, str) or not decl.headline:
        raise ValueError(f"metric {decl.name!r}: headline must name a key of its result dict")
    if decl.kind not in KINDS:
        raise ValueError(f"metric {decl.name!r}: kind must be one of {KINDS}, got {decl.kind!r}")
    bad = [k for k, v in decl.presets.items() if not isinstance(v, Mapping)]
    if bad:
        raise ValueError(f"metric {decl.name!r}: presets {bad} must map parameter names to values")
    if decl.fdae is not None and not callable(decl.fdae) and decl.fdae not in FDAE_FORMS:
        raise ValueError(f"metric {decl.name!r}: fdae must be None, a callable or one of {FDAE_FORMS}")
    if (decl.fdae == "reduced" or callable(decl.fdae)) and not decl.shared_code:
        raise ValueError(f"metric {decl.name!r}: its FDAE form scores shared draws, so it needs "
                         "shared_code=True")


def declare_metric(
    name: str,
    *,
    headline: str,
    presets: Mapping[str, Mapping[str, Any]],
    shared_code: bool = False,
    fdae: str | Callable[..., dict[str, Any]] | None = None,
    planned: Callable[[dict[str, Any], int], int] | None = None,
    parallel: bool = False,
    order: float = 1000.0,
    kind: str = "factors",
) -> Callable[[Any], Any]:
    """Decorator: register ``fn`` as metric ``name`` (``kind="factors"``: in ``METRICS``) and
    attach its :class:`MetricDeclaration` as ``fn.declaration``."""

    def decorator(fn: Any) -> Any:
        decl = MetricDeclaration(name, headline, presets, shared_code, fdae, planned, parallel,
                                 order, kind, getattr(fn, "__module__", ""))
        _check(decl)
        old = _DECLARED.get(name)
        if old is not None and old.module != decl.module:
            raise ValueError(f"metric '{name}' is declared twice: in {old.module} and {decl.module}")
        if kind == "factors":
            METRICS.register(name)(fn)
        fn.declaration = decl
        _DECLARED[name] = decl
        return fn

    return decorator


def declarations(kind: str | None = None) -> list[MetricDeclaration]:
    """Every declared metric (of ``kind``), built-ins imported first, in table order."""
    METRICS.names()  # imports every built-in metric module
    found = [d for d in _DECLARED.values() if kind is None or d.kind == kind]
    return sorted(found, key=lambda d: (d.order, d.name))


def declaration(name: str) -> MetricDeclaration:
    """The declaration of metric ``name``; a metric registered without one (a bare
    ``@METRICS.register``) gets an empty one: no headline, no preset sizes, its own draws."""
    METRICS.names()
    if name in _DECLARED:
        return _DECLARED[name]
    return MetricDeclaration(name, "", {}, module=getattr(METRICS.get(name), "__module__", ""))


def headline_keys() -> dict[str, str]:
    """{metric: headline key} of every declared metric, in table order."""
    return {d.name: d.headline for d in declarations()}


def preset_table(preset: str, kind: str = "factors") -> dict[str, dict[str, Any]]:
    """{metric: its parameters} under ``preset`` for every metric of ``kind`` that declares it."""
    return {d.name: d.sizes(preset) for d in declarations(kind) if preset in d.presets}


def fdae_metrics() -> tuple[str, ...]:
    """The metrics with an FDAE form."""
    return tuple(d.name for d in declarations("factors") if d.fdae is not None)


class HeadlineView(Mapping[str, str]):
    """``{metric: headline key}``, read from the declarations at each access."""

    def __getitem__(self, name: str) -> str:
        return headline_keys()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(headline_keys())

    def __len__(self) -> int:
        return len(headline_keys())

    def __repr__(self) -> str:
        return f"HeadlineView({headline_keys()!r})"


class PresetView(Mapping[str, dict[str, dict[str, Any]]]):
    """``{preset: {metric: parameters}}`` of one kind, read from the declarations (copies: edit
    a metric's ``params`` in :func:`~disentkit.metrics.evaluate`, not this view)."""

    def __init__(self, kind: str = "factors") -> None:
        self.kind = kind

    def _names(self) -> list[str]:
        names: list[str] = []
        for d in declarations(self.kind):
            names += [p for p in d.presets if p not in names]
        return names

    def __getitem__(self, preset: str) -> dict[str, dict[str, Any]]:
        if preset not in self._names():
            raise KeyError(preset)
        return preset_table(preset, self.kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return f"PresetView({dict(self)!r})"


class NameView(Sequence[str]):
    """A tuple of metric names computed at each access (e.g. :func:`fdae_metrics`)."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names

    def __getitem__(self, index: Any) -> Any:
        return tuple(self._names())[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._names()))

    def __repr__(self) -> str:
        return repr(tuple(self._names()))
