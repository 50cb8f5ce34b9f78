"""Events and metrics are typed documents: the events match docs/payload.md, the metrics render to
JSON and to Prometheus from one object."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.events import KINDS, DataDropped
from agent.metrics import BufferMetrics, DeviceMetrics, Metrics, PublisherStats

REPO = Path(__file__).resolve().parents[2]


def test_event_kinds_and_fields_are_the_documented_ones() -> None:
    """docs/payload.md's events table and agent/events.py name the same kinds with the same fields."""
    table = (REPO / "docs" / "payload.md").read_text().split("## Events", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        kind = re.fullmatch(r"`([a-z_]+)`", cells[0]) if len(cells) >= 3 else None
        if kind:
            documented[kind.group(1)] = re.findall(r"`([a-z_]+)`", cells[1])
    assert documented == {kind: cls.field_names() for kind, cls in KINDS.items()}


def test_an_event_body_is_its_fields() -> None:
    assert DataDropped([3, 5], 3, 120, 1000, 3999, 240).body() == {
        "seqs": [3, 5], "batches": 3, "readings": 120, "from_ms": 1000, "to_ms": 3999, "dropped_total": 240}


def test_metrics_render_to_json_and_prometheus_from_one_object() -> None:
    metrics = Metrics(1_700_000_000_000, {"m1": DeviceMetrics("online", 10, 20, 1, 0, 0, 0, 2, 3, 12.5)},
                      BufferMetrics(4, 4096, 160, 1_699_999_990_000, 7, 3.5, 1, False, "disk I/O error"),
                      PublisherStats(published=9, acked=8), 1.5, 40_000)
    document = json.loads(json.dumps(metrics.as_json()))
    assert document["devices"]["m1"]["stalls"] == 3 and document["buffer"]["on_disk"] is False
    assert document["publisher"]["acked"] == 8
    text = metrics.prometheus()
    assert 'edge_agent_device_stalls_total{device="m1"} 3' in text
    assert "edge_agent_buffer_on_disk 0" in text and "edge_agent_mqtt_acked_total 8" in text
    assert "edge_agent_rss_bytes 40960000" in text and "edge_agent_dropped_readings_total 7" in text
