"""Each provider's own rate limit reaches the tracker's policy (not one minimum of them all)."""

from __future__ import annotations

from pathlib import Path

from batchd.tracker import sweep_interval
from batchd.wiring import Policies, provider_rates

from .helpers import load

TWO_ACCOUNTS = """
[providers.slow]
kind = "emulator"
requests_per_second = 0.5
[providers.fast]
kind = "emulator"
requests_per_second = 50
[[routes]]
name = "a"
spool = "/srv/a"
provider = "slow"
[[routes]]
name = "b"
spool = "/srv/b"
provider = "fast"
"""


def test_each_provider_keeps_its_own_rate_in_the_track_policy(tmp_path: Path) -> None:
    settings = load(tmp_path, TWO_ACCOUNTS)
    rates = provider_rates(settings, ["slow", "fast"])
    assert rates == {"slow": 0.5, "fast": 50.0}
    track = Policies.from_settings(settings, rates).track
    assert sweep_interval(10_000, track, "fast") == track.poll_initial_s
    assert sweep_interval(10_000, track, "slow") == 400  # 100 pages at 0.25 requests/s
