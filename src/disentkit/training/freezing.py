"""Frozen sub-networks: kept in eval mode, without gradients, in no optimiser.

A model declares the sub-modules that never train (``Model.frozen_modules``, e.g. the pre-trained
denoiser a PDAE-style shift decoder is trained against); the engine freezes those and any extra
names it is given (:func:`freeze_modules`) before the optimisers are built, so frozen weights are
in no parameter group and stay bit-identical through training. A frozen module's ``train()``
leaves it in eval mode, so ``model.train()`` at the start of the loop does not switch its
dropout or batch-norm statistics back on.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

from torch import nn

from disentkit.errors import ConfigError

__all__ = ["freeze_modules", "frozen_names", "is_frozen", "model_frozen_modules"]

#: attribute a frozen module carries (what :func:`is_frozen` reads)
_FROZEN = "_disentkit_frozen"


def _eval_only_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """``train(mode)`` of a frozen module: it and its children stay in eval mode."""
    del mode
    return nn.Module.train(self, False)


def _submodule(model: nn.Module, name: str) -> nn.Module:
    """``model``'s sub-module ``name`` or a one-line ConfigError listing the names there are."""
    if not name:
        raise ConfigError("cannot freeze the whole model (the empty module name): nothing would be "
                          "left to train; name the sub-modules to freeze")
    try:
        return model.get_submodule(name)
    except AttributeError:
        top = [n for n, _ in model.named_children()]
        shown = ", ".join(top[:8]) + (f" and {len(top) - 8} more" if len(top) > 8 else "")
        model_name = getattr(model, "registry_name", type(model).__name__)
        raise ConfigError(
            f"cannot freeze {name[:60]!r}: model {model_name} has no such sub-module (its modules: "
            f"{shown or 'none'}); name a sub-module, dotted for nested ones (e.g. unet.encoder)"
        ) from None


def freeze_modules(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Freeze ``model``'s sub-modules ``names`` (dotted): no gradients, eval mode for good.

    Call it before the optimisers are built (the engine does, with the model's declared
    ``frozen_modules`` and any extra names); frozen parameters are then left out of every
    optimiser. Returns the names frozen, without repeats; an unknown name raises
    :class:`~disentkit.config.ConfigError` before anything is changed.
    """
    unique = list(dict.fromkeys(names))
    modules = [_submodule(model, name) for name in unique]
    for module in modules:
        module.requires_grad_(False)
        # bound to the module (not a closure), so a deep copy (EMA) stays frozen on its own
        module.train = types.MethodType(_eval_only_train, module)  # type: ignore[method-assign]
        setattr(module, _FROZEN, True)
        module.eval()
    return unique


def model_frozen_modules(model: nn.Module) -> tuple[str, ...]:
    """The sub-modules ``model`` declares frozen (``Model.frozen_modules``)."""
    return tuple(getattr(model, "frozen_modules", ()) or ())


def is_frozen(module: nn.Module) -> bool:
    """Whether :func:`freeze_modules` froze ``module``."""
    return bool(getattr(module, _FROZEN, False))


def frozen_names(model: nn.Module) -> list[str]:
    """Dotted names of ``model``'s frozen sub-modules (outermost only)."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name and is_frozen(module) and not any(name.startswith(f"{n}.") for n in names):
            names.append(name)
    return names
