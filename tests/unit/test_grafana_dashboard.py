"""The sample Grafana dashboard only queries metrics batchd exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from batchd.api.metrics_route import Snapshot, render

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "batchd.json"


def exported() -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(render(Snapshot()).decode())
        for suffix in suffixes[family.type]
    }


def test_every_query_names_an_exported_metric() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"\bbatchd_[a-z_]+", target["expr"])
    }
    known = exported()
    assert queried and queried - known == set()
