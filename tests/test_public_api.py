"""Each package's public API is exactly its ``__all__``, and every name in it works."""

from __future__ import annotations
import __future__

import importlib
import subprocess
import sys
import types
import typing
from typing import Any

import pytest

PACKAGES = ["regtune.platform", "regtune.search_spaces", "regtune.trainables"]


def exported(package: types.ModuleType) -> set[str]:
    """The public names a user sees on ``package`` (``dir``), less its submodules and
    the helpers a module imports for itself (``annotations``, ``typing`` names, modules)."""
    names = set()
    for name in dir(package):
        if name.startswith("_"):
            continue
        value = getattr(package, name)
        if isinstance(value, types.ModuleType | __future__._Feature):
            continue
        if getattr(typing, name, object()) is value:
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_exactly_what_the_package_exports(name: str) -> None:
    package = importlib.import_module(name)
    assert len(package.__all__) == len(set(package.__all__)), "duplicates in __all__"
    assert exported(package) == set(package.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_is_defined_in_the_package(name: str) -> None:
    package = importlib.import_module(name)
    for public in package.__all__:
        value: Any = getattr(package, public)
        # Classes and functions come from the package itself, not passed on
        # from a third party (constants and type aliases have no home to check).
        if isinstance(value, type | types.FunctionType):
            assert value.__module__.startswith(name), (public, value.__module__)
    star: dict[str, Any] = {}
    exec(f"from {name} import *", star)
    assert set(star) - {"__builtins__"} == set(package.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    platform = importlib.import_module("regtune.platform")
    with pytest.raises(AttributeError, match=r"regtune\.platform.*run_swep"):
        _ = platform.run_swep


def test_importing_platform_does_not_start_ray_imports() -> None:
    # Every `regtune` command imports regtune.platform: it must stay light.
    code = "import sys, regtune.platform; print(sorted(m for m in sys.modules if m == 'ray'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
