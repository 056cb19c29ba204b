"""Typed run configuration: packaged YAML presets + ``key=value`` overrides, strictly checked.

A run config has fixed sections (``train``, ``optim``, ``lr_schedule``, ``eval``, ``log``) and two
sections whose fields depend on what they name: ``model`` and ``data``. Their ``name`` picks a
registry entry, and that entry's ``Config`` dataclass types the remaining keys. Unknown keys and
wrong types fail with a message naming the key and what is allowed.

    cfg = load_config("betavae/sprites", ["model.beta=4", "seed=3"])
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from disentkit.errors import ConfigError, UserError  # noqa: F401  (ConfigError re-exported)
from disentkit.ranges import (
    Count,
    Decay,
    NonNegative,
    NonNegInt,
    Positive,
    Probability,
    Range,
    Seed,
)


# --------------------------------------------------------------------------------------------
# Fixed sections
# --------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    steps: Annotated[Count, "the number of training steps"] = 1000
    batch_size: Annotated[Count, "images per optimiser step"] = 64
    #: cpu, cuda, or auto (cuda when available)
    accelerator: Literal["cpu", "cuda", "auto"] = "cpu"
    #: processes/GPUs per node; >1 runs DDP (Fabric launches the processes, or torchrun/SLURM did)
    devices: Annotated[Count, "processes per node"] = 1
    num_nodes: Count = 1
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    #: L2 norm for gradient clipping (per optimiser); null disables it
    grad_clip: Annotated[Positive, "the largest gradient norm"] | None = None
    #: EMA decay of the modules named in ema_modules; null: no EMA
    ema_decay: Annotated[float, Range(gt=0, lt=1, what="the EMA decay")] | None = None
    #: the sub-modules the EMA averages; empty: those the model declares (Model.ema_modules),
    #: or all of the model when it declares none
    ema_modules: list[str] = field(default_factory=list)
    #: LDM's EMA warm-up: update k uses min(ema_decay, (1 + k) / (10 + k)) (LitEma)
    ema_warmup: bool = False
    #: micro-batches of batch_size images whose gradients are summed (averaged) into one
    #: optimiser step: the step sees accumulate * batch_size images
    accumulate: Annotated[Count, "micro-batches per optimiser step"] = 1
    #: steps between checkpoints (one is also written at the end and on pre-emption)
    checkpoint_every: Annotated[Count, "steps between checkpoints"] = 1000
    #: keep the whole uint8 dataset on the training device (in-memory grids; saves the host copy)
    data_on_device: bool = False
    #: on CPU runs, keep freed memory in the process (glibc mallopt; faster, steadier steps)
    cpu_malloc_tuning: bool = True
    #: CPU threads for torch (0: leave torch's default)
    num_threads: NonNegInt = 0
    #: keep weights and images in channels-last (NHWC) memory order: the same computation,
    #: faster convolutions on GPUs with tensor cores (docs/running_fast.md)
    channels_last: bool = False
    #: run the model's training_losses through torch.compile (the first steps compile)
    compile: bool = False
    #: torch.compile's mode; reduce-overhead replays CUDA graphs (small models, short steps)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"


@dataclass
class OptimConfig:
    #: adam, adamw (decoupled weight decay) or radam (rectified Adam, FDAE's optimiser)
    name: Literal["adam", "adamw", "radam"] = "adam"
    lr: Annotated[Positive, "the learning rate"] = 1e-4
    betas: tuple[Decay, Decay] = (0.9, 0.999)
    eps: Positive = 1e-8
    weight_decay: NonNegative = 0.0
    #: torch's multi-tensor (foreach) update: true, false, or null for torch's default
    foreach: bool | None = None
    #: torch's fused update kernel (adam, adamw; CUDA and CPU): the fastest on a GPU
    fused: bool = False


@dataclass
class LRScheduleConfig:
    """The learning-rate schedule (section ``lr_schedule``; it was called ``schedule``)."""

    name: Literal["constant", "cosine", "linear"] = "constant"
    #: linear warm-up: step s (0-based) of the first warmup_steps runs at lr * (s + 1) / warmup_steps
    warmup_steps: Annotated[NonNegInt, "learning-rate warm-up steps"] = 0
    #: final learning rate as a fraction of the initial one (cosine, linear)
    min_lr_ratio: Probability = 0.0


#: the old name of :class:`LRScheduleConfig`
ScheduleConfig = LRScheduleConfig


@dataclass
class EvalConfig:
    #: metric names from disentkit.metrics; evaluated by `disentkit eval` and at the end of training
    metrics: list[str] = field(default_factory=lambda: ["mig", "factor_vae", "dci", "sap", "beta_vae"])
    preset: Literal["study", "fast"] = "study"
    seed: Seed = 0
    #: evaluate automatically when training ends (needs a ground-truth dataset)
    at_end: bool = True
    #: write the report (reconstructions, traversals) when training ends
    report_at_end: bool = True
    #: dlib (codes as they are), fdae or disdiff (groups of code dimensions); null: the
    #: model's default protocol (Model.default_protocol)
    protocol: Literal["dlib", "fdae", "disdiff"] | None = None
    #: the grouped protocols' layout: num_groups equal consecutive groups or groups of
    #: group_size dimensions; both null: the groups the model declares (Model.code_groups)
    num_groups: Annotated[Count, "the number of code groups"] | None = None
    group_size: Annotated[Count, "code dimensions per group"] | None = None


@dataclass
class LogConfig:
    #: log the loss terms every N steps
    every: Annotated[Count, "steps between log lines"] = 50
    tensorboard: bool = False
    progress: bool = True
    #: every N steps write samples/step_N.png, a grid of images from the model's sample()
    #: drawn with the EMA weights when there are some (0: none)
    images_every: Annotated[NonNegInt, "steps between sample grids"] = 0


@dataclass
class InitConfig:
    """Start from another run's weights (multi-stage runs, :mod:`disentkit.training.stages`)."""

    #: the upstream run folder this run starts from (recorded resolved when the run starts)
    run: str = ""
    #: or the upstream stage's preset: trained beside this run (out_dir/<its name>) unless it
    #: finished there already
    preset: str = ""
    #: key=value overrides of the upstream preset
    overrides: list[str] = field(default_factory=list)
    #: submodules to load (``name``, or ``name=upstream_name``); empty: every weight whose name
    #: this model shares with the upstream one
    modules: list[str] = field(default_factory=list)
    #: submodules to freeze: no gradients, kept in eval mode
    freeze: list[str] = field(default_factory=list)
    #: load the upstream run's EMA weights where it has them
    use_ema: bool = True
    #: sha256 of the upstream checkpoint: recorded when the run starts, checked when given
    sha256: str = ""


@dataclass
class SectionConfig:
    """A registry-backed section: ``name`` plus that entry's typed ``params`` dataclass."""

    name: str
    params: Any

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: expose params' fields as attributes.
        if key in ("name", "params") or key.startswith("__"):
            raise AttributeError(key)
        return getattr(self.params, key)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **_to_plain(self.params)}


@dataclass
class RunConfig:
    model: SectionConfig
    data: SectionConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    init: InitConfig = field(default_factory=InitConfig)
    seed: Seed = 0
    #: the preset this config came from (recorded, not interpreted)
    preset: str = ""
    #: where runs go; the run directory is out_dir/name
    out_dir: str = "runs"
    #: run directory name, one folder inside out_dir (no / or \, not . or ..); empty:
    #: <preset>-seed<seed>
    name: str = ""
    #: extra data root for dataset files (also DISENTKIT_DATA)
    data_root: str = ""
    #: modules to import before building (to register user models/datasets); a run folder's
    #: config.yaml never imports them on its own (see load_config_file)
    imports: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, SectionConfig) else _to_plain(value)
        return out

    @property
    def run_name(self) -> str:
        if self.name:
            return self.name
        base = self.preset.replace("/", "-") if self.preset else f"{self.model.name}-{self.data.name}"
        return f"{base}-seed{self.seed}"


_REGISTRY_SECTIONS = ("model", "data")

#: old top-level section names and their new ones: configs with the old name still load, with
#: one warning (``schedule`` became ``lr_schedule`` so that a noise schedule is not mistaken for it)
RENAMED_SECTIONS = {"schedule": "lr_schedule"}


class _Renamed:
    """The key under which plain config data records where old section names were read
    (never a YAML key: it is not a string)."""

    def __repr__(self) -> str:
        return "<renamed sections>"


_RENAMED = _Renamed()


# --------------------------------------------------------------------------------------------
# Strict conversion of plain data into dataclasses
# --------------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        inner = _type_name(args[0]) if args else "any"
        return f"a list of {inner}"
    return getattr(tp, "__name__", str(tp))


class _Spelled(str):
    """An override value that YAML reads as a number or boolean but that was spelled otherwise
    (``name=000``, ``data.path=0123``, ``name=on``): a string field keeps the spelling as typed,
    any other field gets YAML's value (see :func:`parse_override`)."""

    value: Any

    def __new__(cls, raw: str, value: Any) -> _Spelled:
        obj = super().__new__(cls, raw)
        obj.value = value
        return obj


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` (ints are accepted for floats); raise ConfigError."""
    if isinstance(value, _Spelled):
        if tp is str:
            return str(value)
        if typing.get_origin(tp) not in (typing.Union, types.UnionType):
            value = value.value  # a union tries its options with the spelling still known
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        # YAML turns `precision=32` into an int; accept the string spelling of a literal.
        if str(value) in [str(a) for a in args]:
            return next(a for a in args if str(a) == str(value))
        raise ConfigError(f"{key}: got {_short(value)}; allowed values: {', '.join(repr(a) for a in args)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: got {_short(value)}; expected {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: got {_short(value)}; expected {_type_name(tp)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        converted = [_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: got {_short(value)}; expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is float:
        if isinstance(value, str):
            # PyYAML reads 1e-4 (no dot) as a string; accept any spelling float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: got {_short(value)}; expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: got {_short(value)}; expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: got {_short(value)}; expected true or false")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: got {_short(value)}; expected a string")
        return str(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: got {_short(value)}; expected {_type_name(tp)}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {_short(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key '{_clip(where + str(unknown[0]))}'; allowed keys in {prefix or 'the config'}: "
            f"{', '.join(names)}"
        )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a default is missing
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def _section_from_dict(section: str, data: Any) -> SectionConfig:
    from disentkit.registry import DATASETS, MODELS, UnknownEntryError

    registry = MODELS if section == "model" else DATASETS
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(
            f"{section}: needs a 'name' (one of {', '.join(registry.names())}), got {_short(data)}"
        )
    rest = dict(data)
    name = str(rest.pop("name"))
    try:
        entry = registry.get(name)
    except UnknownEntryError as err:
        raise ConfigError(f"{section}.name: {err}") from err
    return SectionConfig(name=name, params=from_dict(entry.Config, rest, section))


def config_from_dict(
    data: dict[str, Any], *, trust_imports: bool = True, source: str = "the config"
) -> RunConfig:
    """Strictly build a :class:`RunConfig` from nested plain data and check every value.

    ``imports`` are imported first (they may register the model or dataset). With
    ``trust_imports=False`` (a run folder's config.yaml, named ``source`` in messages) a module
    that is not imported yet raises :class:`UntrustedImportsError` instead of running its code.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping of sections, got {_short(data)}")
    data = rename_sections(data, source)
    _warn_renamed(data.pop(_RENAMED, []))
    if "imports" in data:
        data["imports"] = _convert(data["imports"], list[str], "imports")
        _check_imports(data["imports"])
        _import_modules(data["imports"], trusted=trust_imports, source=source)
    for section in _REGISTRY_SECTIONS:
        if section not in data:
            raise ConfigError(f"the config needs a '{section}' section with a 'name'")
        data[section] = _section_from_dict(section, data[section])
    hints = typing.get_type_hints(RunConfig)
    names = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key '{_clip(str(unknown[0]))}'; allowed top-level keys: "
                          f"{', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        kwargs[name] = value if name in _REGISTRY_SECTIONS else _convert(value, hints[name], name)
    config = RunConfig(**kwargs)
    check_config(config)
    return config


# --------------------------------------------------------------------------------------------
# Value checks: declared ranges (disentkit.ranges), the run name, the imports list
# --------------------------------------------------------------------------------------------
class UntrustedImportsError(ConfigError):
    """A run folder's config.yaml names modules to import; importing them would run its code."""


def data_section(settings: dict[str, Any]) -> SectionConfig:
    """A checked data section from plain ``{"name": ..., key: value}`` settings (``eval --data``)."""
    section = _section_from_dict("data", settings)
    _check_fields(section.params, "data")
    return section


def check_config(config: RunConfig) -> None:
    """Check a whole config before anything runs: every number of every section (model and
    data included) against the range its field declares, every float finite, the run name
    and the imports list. Raises :class:`ConfigError` naming the first bad value."""
    _check_fields(config, "")
    _check_run_name(config.run_name)
    _check_imports(config.imports)
    _check_init(config.init)
    _check_fast_options(config)


def _check_fast_options(config: RunConfig) -> None:
    """Optimiser kernels torch has: no fused RAdam, and fused and foreach are alternatives."""
    optim = config.optim
    if optim.fused and optim.name == "radam":
        raise ConfigError("optim.fused = true: torch has no fused RAdam (only adam and adamw); "
                          "use optim.foreach=true for radam, or optim.name=adam/adamw")
    if optim.fused and optim.foreach:
        raise ConfigError("optim.fused and optim.foreach are both true; they are two ways of "
                          "running the update: set one of them")


def _check_fields(obj: Any, prefix: str) -> None:
    hints = _extra_hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        _check_value(getattr(obj, f.name), hints.get(f.name, Any), key)


def _extra_hints(cls: type) -> dict[str, Any]:
    """Type hints with their ``Annotated`` ranges kept."""
    return typing.get_type_hints(cls, include_extras=True)


def _check_value(value: Any, hint: Any, key: str, meta: tuple = (), nullable: bool = False) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        _check_value(value, args[0], key, (*meta, *hint.__metadata__), nullable)
        return
    if value is None:
        return
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        arm = next((a for a in arms if _is_instance(value, a)), None)
        if arm is not None:
            _check_value(value, arm, key, meta, nullable or len(arms) < len(args))
        return
    if isinstance(value, SectionConfig):
        _check_fields(value.params, key)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _check_fields(value, key)
    elif isinstance(value, (list, tuple)):
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        for i, item in enumerate(value):
            inner = args[i] if fixed and i < len(args) else (args[0] if args and not fixed else Any)
            _check_value(item, inner, f"{key}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, key, meta, nullable)


def _is_instance(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of (the unannotated) ``hint``, to pick a union's arm."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, origin or hint)


def _check_number(value: float, key: str, meta: tuple, nullable: bool) -> None:
    ranges = [m for m in meta if isinstance(m, Range)]
    described = [m for m in meta if isinstance(m, str)] + [r.what for r in ranges if r.what]
    what = f" ({described[0]})" if described else ""
    null = ", or null to turn it off" if nullable else ""
    for rng in ranges:
        if not rng.contains(value):
            integer = isinstance(value, int)
            kind = "an integer" if integer else "a number" if math.isfinite(value) else "a finite number"
            raise ConfigError(
                f"{key} = {_short(value)} is out of range: expected {kind} {rng.bounds()}{what}; "
                f"set {key} to {rng.advice(integer)}{null}"
            )
    if isinstance(value, float) and not math.isfinite(value) and not ranges:
        raise ConfigError(f"{key} = {value} is not a finite number{what}; set {key} to a finite "
                          f"number{null}")


_UNSAFE_NAME_CHARS = ("/", "\\", "\0")


def _check_run_name(name: str) -> None:
    """A run name is one folder inside out_dir: never a path, never ``.``/``..`` (which would
    write into out_dir itself or above it)."""
    if not name.strip():
        problem = "is blank"
    elif set(name) == {"."}:
        problem = "is only dots (that is out_dir itself or a folder above it)"
    elif any(c in name for c in _UNSAFE_NAME_CHARS) or Path(name).is_absolute():
        problem = "is a path, not one folder name"
    else:
        return
    raise ConfigError(
        f"name = {_short(name)} {problem}; a run name is one folder inside out_dir without / or \\ "
        "(e.g. name=beta4-seed0; put the folder elsewhere with out_dir=DIR), or leave name empty "
        "for <preset>-seed<seed>"
    )


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _check_imports(modules: list[str]) -> None:
    for i, module in enumerate(modules):
        if not _MODULE_NAME.fullmatch(module):
            raise ConfigError(
                f"imports[{i}] = {_short(module)} is not a module name; expected a dotted Python "
                "module name (e.g. imports=[my_models] or imports=[mypkg.models])"
            )


_MODULE_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_init(init: InitConfig) -> None:
    """The ``init`` section names one upstream (a run folder or a preset), module paths and a
    sha256 that can be used; whether the upstream exists is checked when the run starts."""
    if (init.modules or init.use_ema is not True or init.sha256) and not (init.run or init.preset):
        raise ConfigError(
            "init: modules, use_ema and sha256 need an upstream run: set init.run=RUN_DIR (a "
            "finished run folder) or init.preset=NAME (its preset, trained first)"
        )
    if init.overrides and not init.preset:
        raise ConfigError("init.overrides change the upstream preset, and init.preset is not set; "
                          "set init.preset=NAME or drop init.overrides")
    for i, text in enumerate(init.overrides):
        key = parse_override(text)[0]  # ConfigError when not key=value
        if key[0] in ("preset", "out_dir"):
            why = "the upstream's preset is init.preset" if key[0] == "preset" else \
                "an upstream stage trains beside this run (out_dir/<its name>); to start from " \
                "a run elsewhere set init.run=RUN_DIR"
            raise ConfigError(f"init.overrides[{i}] = {_short(text)} cannot be changed there: {why}")
    for what in ("modules", "freeze"):
        for i, name in enumerate(getattr(init, what)):
            parts = name.split("=") if what == "modules" else [name]
            if len(parts) > 2 or not all(_MODULE_PATH.fullmatch(p) for p in parts):
                form = "name or name=upstream_name" if what == "modules" else "name"
                raise ConfigError(
                    f"init.{what}[{i}] = {_short(name)} is not a module path; expected a {form} "
                    "with dotted submodule names (e.g. encoder or unet.input_blocks)"
                )
    if init.sha256 and not _SHA256.fullmatch(init.sha256):
        raise ConfigError(f"init.sha256 = {_short(init.sha256)} is not a sha256; expected 64 "
                          "lowercase hex digits (as a run's summary.json records), or leave it empty")


def _import_modules(modules: list[str], trusted: bool, source: str) -> None:
    """Import ``modules`` (user code registering models/datasets). Untrusted, only modules that
    are already imported are accepted: importing them again runs nothing, importing new ones
    would run code named by someone else's run folder."""
    import importlib

    pending = [m for m in modules if m not in sys.modules]
    if pending and not trusted:
        names = _clip(", ".join(pending), 120)
        raise UntrustedImportsError(
            f"{source} asks to import {names} (its imports list), and opening a run folder never "
            "imports code from it; if you trust that code, add --trust-imports (Python: "
            "trust_imports=True)"
        )
    for module in pending:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or not (module == err.name or module.startswith(f"{err.name}.")):
                raise  # the module itself failed importing something: its own bug, keep the trace
            raise ConfigError(
                f"imports: no module named '{err.name}' (from {source}); install it or make it "
                "importable (PYTHONPATH), or remove it from imports"
            ) from err


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so a message stays one short line."""
    return _clip(repr(value), limit)


def _clip(text: str, limit: int = 60) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 20, 10)]}... ({len(text)} characters)"


# --------------------------------------------------------------------------------------------
# Presets and overrides
# --------------------------------------------------------------------------------------------
def preset_names() -> list[str]:
    """All packaged presets, as ``method/dataset`` names."""
    root = resources.files("disentkit") / "configs"
    names = []
    for path in Path(str(root)).rglob("*.yaml"):
        rel = path.relative_to(Path(str(root))).with_suffix("")
        if not rel.name.startswith("_"):
            names.append(rel.as_posix())
    return sorted(names)


def load_preset(name: str) -> dict[str, Any]:
    """The plain data of a packaged preset (``betavae/sprites``) or of a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        resource = resources.files("disentkit") / "configs" / f"{name}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown preset '{_clip(name)}'; packaged presets: {', '.join(preset_names())} "
                "(or give a path to a .yaml file)"
            )
        text = resource.read_text()
    data = _read_yaml(text, f"preset '{name}'")
    if not isinstance(data, dict):
        raise ConfigError(f"preset '{_clip(name)}' must be a YAML mapping")
    data.pop("source", None)  # provenance note kept in the file, not a config key
    data = rename_sections(data, f"preset '{_clip(name)}'")
    base = data.pop("base", None)
    if base:
        below = load_preset(base)
        renamed = below.get(_RENAMED, []) + data.get(_RENAMED, [])
        data = deep_merge(below, data)
        if renamed:
            data[_RENAMED] = renamed
    return data


def rename_sections(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with old top-level section names (:data:`RENAMED_SECTIONS`) under their new
    names, recording ``source`` for the one warning :func:`config_from_dict` gives. Where one
    file has both names, the new name's keys win."""
    old = [key for key in RENAMED_SECTIONS if key in data]
    if not old:
        return data
    data = dict(data)
    for key in old:
        new, value = RENAMED_SECTIONS[key], data.pop(key)
        if isinstance(value, dict) and isinstance(data.get(new), dict):
            data[new] = {**value, **data[new]}
        elif new not in data:
            data[new] = value
        data[_RENAMED] = [*data.get(_RENAMED, []), source]
    return data


def _warn_renamed(places: list[str]) -> None:
    """One ``warning:`` line on standard error naming where old section names were read."""
    if not places:
        return
    from disentkit.training.distributed import is_global_zero

    if is_global_zero():
        where = _clip(", ".join(dict.fromkeys(places)), 240)
        names = ", ".join(f"'{old}' is now '{new}'" for old, new in RENAMED_SECTIONS.items())
        print(f"warning: {where} uses an old config section name ({names}); it was read under the "
              "new name: rename it (e.g. lr_schedule.warmup_steps=500), the old name will stop "
              "working in a future release", file=sys.stderr, flush=True)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            # A section that names another registry entry replaces the old one's keys.
            if key in _REGISTRY_SECTIONS and "name" in value and value["name"] != out[key].get("name"):
                out[key] = dict(value)
            else:
                out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.beta=4`` -> (["model", "beta"], 4); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override '{_clip(text)}' must look like key=value (e.g. model.beta=4)")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override '{_clip(text)}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (bool, int, float)) and str(value) != raw.strip():
        # `name=000` must name the folder 000, not 0: keep the spelling for string fields.
        value = _Spelled(raw.strip(), value)
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] in RENAMED_SECTIONS:  # an old section name: set the new section's key
            data[_RENAMED] = [*data.get(_RENAMED, []), f"override {_clip(text, 60)}"]
            path = [RENAMED_SECTIONS[path[0]], *path[1:]]
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            else:
                child = dict(child)
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a packaged preset (or YAML path), apply ``key=value`` overrides, and check it all.

    A ``preset=NAME`` entry among the overrides is treated like the ``preset`` argument.
    """
    overrides = list(overrides or [])
    for text in list(overrides):
        if text.startswith("preset="):
            preset = text.split("=", 1)[1]
            overrides.remove(text)
    data: dict[str, Any] = load_preset(preset) if preset else {}
    # A changed model/data name drops the preset's params for the old entry.
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 2 and path[0] in _REGISTRY_SECTIONS and path[1] == "name":
            if isinstance(data.get(path[0]), dict) and data[path[0]].get("name") != value:
                data[path[0]] = {}
    data = apply_overrides(data, overrides)
    if preset:
        data["preset"] = preset
    return config_from_dict(data)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config_file(
    path: str | Path, overrides: list[str] | None = None, *, trust_imports: bool = False
) -> RunConfig:
    """A run folder's ``config.yaml``, with ``key=value`` overrides applied, checked.

    The file's ``imports`` are not imported (opening a run folder must not run code from it):
    a module not imported yet raises :class:`UntrustedImportsError`, unless ``trust_imports``
    or the overrides name the imports themselves (``imports=[my_models]``).
    """
    path = Path(path)
    data = _read_yaml(path.read_text(), str(path))
    if isinstance(data, dict):
        data = rename_sections(data, str(path))
    overrides = list(overrides or [])
    named = any(parse_override(text)[0] == ["imports"] for text in overrides)
    data = apply_overrides(data, overrides) if overrides else data
    return config_from_dict(data, trust_imports=trust_imports or named, source=str(path))


def import_run_modules(run_dir: str | Path, trusted: bool) -> list[str]:
    """Deal with the ``imports`` a run folder's ``config.yaml`` lists before a command reads the
    run: import them when ``trusted`` (the user passed ``--trust-imports``), else raise
    :class:`UntrustedImportsError` for any module not imported yet. Returns the module names;
    a folder without a config.yaml (reported later by the command) imports nothing."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return []
    data = _read_yaml(path.read_text(), str(path))
    modules = _convert(data.get("imports") or [], list[str], "imports") if isinstance(data, dict) else []
    _check_imports(modules)
    _import_modules(modules, trusted=trusted, source=str(path))
    return modules


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"{_clip(source, 300)} is not valid YAML{where}: {_clip(str(problem))}; fix "
                          "the file or give another one") from err
