"""Markers: tests under tests/unit are `unit`, under tests/cluster are `cluster`."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(_HERE).parts
        if parts and parts[0] in ("unit", "cluster"):
            item.add_marker(getattr(pytest.mark, parts[0]))
