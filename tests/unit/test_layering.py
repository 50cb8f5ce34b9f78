"""The shape holds: pure modules import no I/O layer, paho stays behind its seam, the product never
loads the test harness."""

from __future__ import annotations

import ast
import subprocess
import sys
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
        assert not {n for n in _top_level_imports(path) if n.split(".")[0] in HARNESS}, relative


HARNESS = ("testkit", "hil", "bench", "tests")
CLI_COMMANDS_LOADING_THE_HARNESS = {"missing_for_harness", "cmd_hil", "cmd_demo"}


def _harness_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        if any(name.split(".")[0] in HARNESS for name in names):
            found.append(node)
    return found


def test_the_agent_imports_the_harness_only_in_the_commands_that_run_it() -> None:
    """Anywhere in `agent/` (not only at module level): testkit, hil, bench and tests are imported by
    the CLI's `hil` and `demo` commands alone, inside their functions, so the product installed without
    them (or with them broken) still runs, validates, probes and simulates."""
    for path in sorted((REPO / "agent").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if path.name == "cli.py":
            allowed = {id(node) for fn in tree.body if isinstance(fn, ast.FunctionDef)
                       and fn.name in CLI_COMMANDS_LOADING_THE_HARNESS for node in _harness_imports(fn)}
        else:
            allowed = set()
        stray = [f"{path.relative_to(REPO)}:{node.lineno}" for node in _harness_imports(tree) if id(node) not in allowed]
        assert not stray, stray


def test_loading_every_agent_module_loads_no_harness_package() -> None:
    """The same at run time: import every module of `agent` in a fresh interpreter, then look."""
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                     for p in (REPO / "agent").rglob("*.py") if p.name != "__main__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HARNESS!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
