"""Cancel of a job that is already terminal or being cancelled is success, even from a server
that refuses it with 400/409 (reference 5 #13, #15); any other refusal is raised."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from batchd.emulator import Behaviour, serve
from batchd.errors import ProviderPermanent
from batchd.models import JobState
from batchd.providers.mistral import MistralProvider
from batchd.providers.mistral_models import MistralJobSpec
from tests.integration.providers.conftest import emulator_config, fast_settings, finish

JOB_ID = "6f1c1f4e-1d7e-4c38-9a51-0b6f0e0c0a11"
INLINE = MistralJobSpec(
    endpoint="/v1/chat/completions",
    model="m",
    requests=({"custom_id": "a", "body": {"messages": []}},),
)


async def test_cancel_of_a_finished_job_refused_with_400_returns_it(
    session: aiohttp.ClientSession,
) -> None:
    async with serve(emulator_config(behaviour=Behaviour(cancel_terminal="error"))) as emu:
        provider = MistralProvider(fast_settings(emu.url), session)
        job_id = (await provider.create_job(INLINE)).id
        await finish(provider, emu, job_id)
        with pytest.raises(ProviderPermanent) as refused:  # the server does refuse it
            await provider.http.call_json("cancel_job", "POST", f"/v1/batch/jobs/{job_id}/cancel")
        assert refused.value.status == 400

        snapshot = await provider.cancel_job(job_id)
        assert (snapshot.id, snapshot.state, snapshot.raw_status) == (
            job_id,
            JobState.SUCCEEDED,
            "SUCCESS",
        )
        assert provider.calls["cancel_job"] == 2  # sent once, not retried


def scripted(cancel_status: int, job_status: str) -> web.Application:
    """A server whose cancel always refuses with ``cancel_status``; the job has ``job_status``."""

    async def cancel(request: web.Request) -> web.Response:
        return web.json_response({"object": "error", "message": "no"}, status=cancel_status)

    async def get(request: web.Request) -> web.Response:
        job = {"id": JOB_ID, "status": job_status, "endpoint": "/v1/chat/completions"}
        return web.json_response(job)

    app = web.Application()
    app.router.add_post(f"/v1/batch/jobs/{JOB_ID}/cancel", cancel)
    app.router.add_get(f"/v1/batch/jobs/{JOB_ID}", get)
    return app


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("cancel_status", "job_status", "outcome"),
    [
        (409, "CANCELLATION_REQUESTED", JobState.CANCELLING),
        (400, "CANCELLED", JobState.CANCELLED),
        (409, "TIMEOUT_EXCEEDED", JobState.EXPIRED),
        (400, "RUNNING", None),  # a refusal of a live job is a real refusal
        (422, "SUCCESS", None),  # not a "moot cancel" status: raised without a look-up
    ],
)
async def test_cancel_refusals(
    session: aiohttp.ClientSession, cancel_status: int, job_status: str, outcome: JobState | None
) -> None:
    runner, url = await start(scripted(cancel_status, job_status))
    try:
        provider = MistralProvider(fast_settings(url), session)
        if outcome is None:
            with pytest.raises(ProviderPermanent) as info:
                await provider.cancel_job(JOB_ID)
            assert info.value.status == cancel_status
        else:
            assert (await provider.cancel_job(JOB_ID)).state is outcome
        assert provider.calls["get_job"] == (0 if cancel_status == 422 else 1)
    finally:
        await runner.cleanup()
