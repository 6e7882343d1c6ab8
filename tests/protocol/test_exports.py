"""The public surface of treadle_protocol is explicit and pinned."""

from __future__ import annotations

import importlib

import pytest

import treadle_protocol

MODULES = [
    "treadle_protocol",
    "treadle_protocol.build",
    "treadle_protocol.errors",
    "treadle_protocol.frames",
    "treadle_protocol.jsonjs",
    "treadle_protocol.manifest",
    "treadle_protocol.registration",
    "treadle_protocol.schema",
    "treadle_protocol.server_frames",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_unique_and_resolvable(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_docstring(name: str) -> None:
    assert (importlib.import_module(name).__doc__ or "").strip()


def test_package_exports_are_pinned() -> None:
    public = {n for n in dir(treadle_protocol) if not n.startswith("_")}
    submodules = {
        "build",
        "errors",
        "frames",
        "jsonjs",
        "manifest",
        "registration",
        "schema",
        "server_frames",
    }
    assert public - submodules - {"annotations"} == set(treadle_protocol.__all__) - {"build"}


def test_exceptions_share_one_root() -> None:
    for error in (
        treadle_protocol.InvalidJsonError,
        treadle_protocol.ManifestError,
        treadle_protocol.EncodeError,
    ):
        assert issubclass(error, treadle_protocol.ProtocolLibraryError)
