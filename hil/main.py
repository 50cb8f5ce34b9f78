"""`edge-agent hil [SCENARIO ...] [--quick] [--out DIR]`: run scenarios, verify, write the report."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hil import report, runner, scenario, verify


def main(names: list[str], quick: bool, out: Path) -> int:
    chosen = names or scenario.available()
    if not chosen:  # a run that proved nothing must not pass
        print(f"error: no HIL scenario found in {scenario.SCENARIO_DIR}; name one or give a scenario file",
              file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in chosen:
        spec = scenario.load(name)
        with tempfile.TemporaryDirectory(prefix=f"hil-{spec.name}-") as tmp:
            collected = runner.run(spec, Path(tmp), quick)
        verdict = verify.verify(collected)
        if not verdict.passed:  # keep what explains it
            (out / f"hil-{spec.name}-agent.log").write_text(collected.agent_log)
            (out / f"hil-{spec.name}-events.json").write_text(json.dumps(collected.platform.events, indent=1))
        png = f"hil-{spec.name}.png"
        report.timeline_png(collected, verdict, out / png)
        results.append((collected, verdict, png))
        print(f"[{spec.name}] {'PASS' if verdict.passed else 'FAIL'}")
        for check in verdict.checks:
            print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.detail}")
        if not verdict.passed:
            log_file = out / f"hil-{spec.name}-agent.log"
            print(f"  what the agent said (starts, stops, warnings, errors; full log in {log_file}):")
            for line in report.diagnosis(collected):
                print(f"    {line[:400]}")
    (out / "hil-report.md").write_text(report.markdown(results))
    passed = sum(v.passed for _, v, _ in results)
    print(f"report: {out / 'hil-report.md'}")
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1
