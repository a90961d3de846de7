"""Small statistics: percentiles, median/min/max over runs, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min and max over runs (``None`` runs are left out), plus the runs themselves."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "runs": list(values)}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "runs": [None if v is None else float(v) for v in values],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    return f"{text}{unit}"


def fmt_range(entry: dict[str, Any], digits: int = 1, unit: str = "") -> str:
    """``median (min-max)`` of a ``summary``."""
    if entry.get("median") is None:
        return "n/a"
    low, high = fmt(entry["min"], digits), fmt(entry["max"], digits)
    return f"{fmt(entry['median'], digits, unit)} ({low}-{high})"
