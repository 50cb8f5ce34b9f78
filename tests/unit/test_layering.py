"""The shape holds: pure modules import no I/O layer, paho stays behind its seam, the product never
loads the test harness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


PURE = ["agent/batcher.py", "agent/codec.py", "agent/schedule.py", "agent/drivers/plan.py", "agent/drivers/decode.py",
        "agent/drivers/registers.py", "agent/drivers/urls.py", "agent/drivers/frames.py", "agent/delivery.py",
        "agent/events.py", "agent/metrics.py"]
IMPURE = ("agent.buffer", "agent.config", "agent.publisher", "agent.daemon", "paho", "sqlite3", "apscheduler",
          "pymodbus", "agent.assembly")


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_layer(module: str) -> None:
    tree = ast.parse((REPO / module).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.startswith(IMPURE)}, module


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    return names | {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}


def test_paho_only_behind_its_seam_and_the_product_never_loads_the_test_harness() -> None:
    """paho is imported by agent/mqtt.py alone; no product module imports `hil` or `tests` when it
    is loaded (the CLI's `hil` and `demo` commands import the harness inside their handlers)."""
    for path in sorted((REPO / "agent").rglob("*.py")):
        relative = str(path.relative_to(REPO))
        source = path.read_text()
        if relative != "agent/mqtt.py":
            assert "import paho" not in source and "from paho" not in source, relative
        assert not {n for n in _top_level_imports(path) if n.split(".")[0] in ("hil", "tests")}, relative
