"""Opening a trained run folder: its config (imports only when trusted), the newest intact
checkpoint (``prev.pt`` when ``last.pt`` is damaged) and the model rebuilt with its weights, EMA
weights where present. Kept apart from :mod:`disentkit.api` so that evaluation, the report and the
commands can open runs without importing the training side (and ``api`` can call them back)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from disentkit.config import RunConfig, load_config_file


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode), its ``config`` and ``path``; unpacks as (model, config)."""

    model: torch.nn.Module
    config: RunConfig
    path: Path

    def __iter__(self):
        return iter((self.model, self.config))

    def data(self) -> Any:
        """Build the run's dataset (from its config's data section and data root)."""
        from disentkit.builders import build_dataset

        return build_dataset(self.config)


def _data_facts(state: dict[str, Any]) -> Any:
    """The DataFacts a checkpoint recorded (image shape and dataset size in older ones)."""
    from disentkit.models.base import DataFacts

    if isinstance(state.get("data_facts"), dict):
        return DataFacts.from_dict(state["data_facts"])
    return DataFacts(tuple(state["image_shape"]), int(state.get("dataset_size", 0)))


def load_run(
    path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu",
    trust_imports: bool = False,
) -> LoadedRun:
    """Load a run directory's config and final (or latest) weights; EMA weights when present.

    The modules the run's config lists under ``imports`` are imported only with
    ``trust_imports=True`` (they run code from wherever the folder came from); without it a
    module not imported yet raises :class:`disentkit.config.UntrustedImportsError`.
    """
    from disentkit.builders import build_model
    from disentkit.training.checkpoint import CHECKPOINT_DIR, CheckpointError, load_latest
    from disentkit.training.ema import EMA

    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no config.yaml)")
    config = load_config_file(config_path, trust_imports=trust_imports)
    # The newest intact checkpoint: last.pt, or prev.pt (with a warning) when last.pt is
    # missing or fails its checksum; CheckpointError when neither is intact.
    state, checkpoint = load_latest(path / CHECKPOINT_DIR)
    model = build_model(config, _data_facts(state))
    try:
        model.load_state_dict(state["model"])
        if use_ema and "ema" in state:
            EMA.copy_into(model, state["ema"])
    except (RuntimeError, KeyError) as err:  # config.yaml edited to another architecture
        first = (str(err).splitlines() or [repr(err)])[0][:300]
        raise CheckpointError(
            f"{checkpoint} does not fit the model {config_path} describes ({first}); restore the "
            "run's model settings in config.yaml"
        ) from err
    model.to(device).eval()
    return LoadedRun(model=model, config=config, path=path)
