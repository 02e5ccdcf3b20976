"""The layering holds: imports point one way, and the core stays pure (no async library, no web, no clock)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "wonderq"

# Lower layers first. A module may import only from layers before its own.
LAYERS: list[set[str]] = [
    {"errors", "model", "ids", "clock", "sqs_wire", "ready", "logs", "principals", "crosssite", "sessions"},
    {"core", "store"},
    {"store_check"},
    {"commands", "config", "metrics", "ratelimit"},
    {"access"},
    {"actor"},
    {"ticker", "jsonbody"},
    {"gate", "openapi"},
    {"signin"},
    {"stream", "sqs", "dashboard"},
    {"web", "listener"},
    {"server"},
    {"client"},
    {"simulate", "stream_client"},
    {"cli"},
    {"__main__"},
]
PURE = {"errors", "model", "core", "commands", "sqs_wire", "ready"}  # no I/O, no clock, no async library
FORBIDDEN_IN_PURE = {"trio", "quart", "quart_trio", "hypercorn", "httpx", "time", "datetime", "asyncio", "os"}


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"wonderq.{module} is in no layer: add it to LAYERS in {__file__}")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(path.stem for path in SOURCE.glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_one_way(module: str) -> None:
    own = layer_of(module)
    for name in imports_of(SOURCE / f"{module}.py"):
        if name.startswith("wonderq."):
            target = name.split(".")[1]
            assert layer_of(target) < own or target == module, f"wonderq.{module} imports {name}"


@pytest.mark.parametrize("module", sorted(PURE))
def test_the_pure_modules_do_no_io(module: str) -> None:
    roots = {name.split(".")[0] for name in imports_of(SOURCE / f"{module}.py")}
    assert not roots & FORBIDDEN_IN_PURE, f"wonderq.{module} imports {roots & FORBIDDEN_IN_PURE}"
