"""The HIL report: a markdown summary and a PNG timeline per scenario a person can look at."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from hil.runner import Collected
from hil.verify import Verdict

COLORS = {"broker_down": "#f4b6b6", "black_hole": "#f7d59c", "device_silent": "#c9d7f2", "device_exception": "#d9c7ef",
          "corrupt_frames": "#c8e6c9", "agent_kill": "#9e9e9e", "agent_term": "#cfcfcf"}


def timeline_png(run: Collected, verdict: Verdict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = verdict.timeline
    xs = list(range(len(data["live"])))
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    ax.bar(xs, data["live"], width=1.0, color="#3b7dd8", label="live readings delivered /s")
    ax.bar(xs, data["historical"], width=1.0, bottom=data["live"], color="#e08b2e",
           label="historical (backlog) readings /s")
    for window in run.windows:
        ax.axvspan(window.start - run.start, window.end - run.start, color=COLORS.get(window.kind, "#eeeeee"), alpha=0.6,
                   label=window.kind + (f" {window.device}" if window.device else ""))
    ax.axvline(run.end - run.start, color="black", linestyle=":", label="end of accounted window")
    ax.set_xlabel("seconds since the agent was ready")
    ax.set_ylabel("readings per second")
    ax2 = ax.twinx()
    ax2.plot(xs, data["dropped"], color="#c62828", label="dropped readings (cumulative)")
    ax2.set_ylabel("dropped (cumulative)")
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    unique = dict(zip(labels + l2, handles + h2, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7, ncol=2)
    ax.set_title(f"{verdict.scenario}: {'PASS' if verdict.passed else 'FAIL'}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(results: list[tuple[Collected, Verdict, str]]) -> str:
    lines = ["# edge-agent HIL report", ""]
    lines += [f"- **{v.scenario}**: {'PASS' if v.passed else 'FAIL'}" for _, v, _ in results]
    for run, verdict, png in results:
        lines += ["", f"## {verdict.scenario}: {'PASS' if verdict.passed else 'FAIL'}", "",
                  run.scenario.description.strip(), "", f"![timeline]({png})", "", "| check | result | detail |",
                  "|---|---|---|"]
        lines += [f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail} |" for c in verdict.checks]
        lines += ["", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in verdict.figures.items()]
        if run.windows:
            lines += ["", "Faults: " + "; ".join(f"{w.kind}{f' {w.device}' if w.device else ''} "
                                                 f"+{w.start - run.start:.1f}..+{w.end - run.start:.1f} s"
                                                 for w in run.windows)]
    return "\n".join(lines) + "\n"


def diagnosis(run: Collected, limit: int = 25) -> list[str]:
    """For a failing run, what a CI log should show without the files: the agent's starts, stops,
    warnings and errors (the last `limit`) and a count of the events the platform received."""
    notable = []
    for line in run.agent_log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # tracebacks and the closing thread dump: in the log file
        if isinstance(entry, dict) and (entry.get("level") in ("warning", "error", "critical")
                                        or entry.get("event") in ("started", "stopped")):
            notable.append(line)
    kinds = Counter(str(e.get("event")) for e in run.platform.events)
    return [*notable[-limit:], "events received: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))]
