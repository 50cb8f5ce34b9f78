"""Every benchmark suite loads: `python -m bench --only X` must not die on an import inside a suite
(a function renamed elsewhere once broke `outage` and `fleet` while the rest ran)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("module", sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__main__"))
def test_the_suite_imports(module: str) -> None:
    importlib.import_module(f"bench.{module}")
