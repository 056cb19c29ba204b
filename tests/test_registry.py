"""Registries: built-in entries are discovered, user entries register, clashes are refused."""

from __future__ import annotations

import pytest

from disentkit.registry import DATASETS, METRICS, MODELS, Registry, UnknownEntryError


def test_builtin_entries_are_discovered() -> None:
    assert {"vae", "betavae"} <= set(MODELS.names())
    assert "sprites" in DATASETS.names()
    assert "mig" in METRICS.names()


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownEntryError, match="unknown model 'nope'; known models: .*betavae"):
        MODELS.get("nope")


def test_register_and_refuse_a_second_object_under_the_same_name() -> None:
    registry = Registry("widget", [])

    @registry.register("a")
    class A:
        pass

    assert registry.get("a") is A and A.registry_name == "a"
    registry.register("a")(A)  # registering the same object again is harmless

    with pytest.raises(ValueError, match="registered twice"):

        @registry.register("a")
        class B:
            pass
