"""``GET /metrics`` parsed with prometheus_client's own parser: the gauges match the store, the
counters move with a finished run, and no label carries an id."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from batchd.models import ACTIVE, LOCAL, SUBMISSION_OPEN
from tests.integration.api.conftest import Api, lines, start_api, stop_api
from tests.integration.api.peers import NOBODY, as_user


async def scrape(
    api: Api, role: str = "read"
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(api.tcp + "/metrics", headers=headers) as r,
    ):
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


async def test_the_gauges_are_what_the_store_holds(tmp_path: Path) -> None:
    api = await start_api(tmp_path, speed=1.0)  # slow: the jobs stay open
    try:
        async with api.unix() as bd:
            for i in range(3):
                await bd.submit(
                    lines(2, f"g{i}"), name=f"g{i}.jsonl", route="chat" if i else "other"
                )
        store = api.daemon.runtime.store  # type: ignore[union-attr]
        samples = await scrape(api)
        subs = await store.list_submissions(states=sorted(SUBMISSION_OPEN))
        for route in ("chat", "other"):
            assert total(samples, "batchd_submissions", route=route) == len(
                [s for s in subs if s.route == route]
            )
        jobs = await store.list_jobs(states=sorted(LOCAL | ACTIVE))
        assert total(samples, "batchd_jobs", provider="emulator") == len(jobs) == 3
        assert ("batchd_loop_heartbeat_age_seconds", (("loop", "intake"),)) in samples
        assert samples[("batchd_provider_paused", (("provider", "emulator"),))] == 0
        for name, labels in samples:
            for key, value in labels:
                assert not value.startswith(("sub_", "job_")), (name, key, value)
        (member,) = await as_user(api.sock, NOBODY, [], [("GET", "/metrics", None)])
        assert member[0] == 403  # the figures cover routes this user cannot see
    finally:
        await stop_api(api)


async def test_the_counters_move_with_a_finished_run(api: Api) -> None:
    before = await scrape(api)
    async with api.unix() as bd:
        accepted = await bd.submit(lines(4, "m"), name="m.jsonl")
        done = await bd.wait(accepted["id"], timeout_s=60, poll_s=0.2)
    after = await scrape(api, role="admin")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("batchd_submissions_finished_total", route="chat", outcome=done["outcome"]) == 1
    assert moved("batchd_requests_total", route="chat", outcome="succeeded") == 4
    assert (
        moved("batchd_tokens_total", route="chat", direction="in") == done["usage"]["prompt_tokens"]
    )
    assert moved("batchd_provider_requests_total", provider="emulator", code="200") >= 3
    assert moved("batchd_provider_request_duration_seconds_count", provider="emulator") >= 3
    assert moved("batchd_download_bytes_total", provider="emulator") > 0
    assert moved("batchd_detection_latency_seconds_count", provider="emulator") == 1
    assert moved("batchd_intake_lag_seconds_count", route="chat") == 1
