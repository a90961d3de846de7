"""Every operation and parameter of ``MistralProvider`` against the emulator over loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp
import pytest

from batchd.emulator import Behaviour, Emulator, serve
from batchd.errors import AuthError, BatchdError, NotFound, ProviderPermanent
from batchd.models import JobState, RequestCounts
from batchd.providers import mistral as mistral_module
from batchd.providers.base import BatchProvider, JobFilter, JobSpec
from batchd.providers.mistral import MistralProvider
from batchd.providers.mistral_models import MistralJob, MistralJobFilter, MistralJobSpec
from batchd.providers.mistral_wire import FileQuery
from batchd.secret import Secret
from tests.integration.providers.conftest import (
    KEY,
    bad_lines,
    chat_lines,
    emulator_config,
    fast_settings,
    finish,
)

CHAT = "/v1/chat/completions"
MODEL = "mistral-small-latest"


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


async def upload(provider: MistralProvider, tmp_path: Path, name: str, n: int = 3) -> str:
    ref = await provider.upload_file(write(tmp_path, name, chat_lines(n)))
    return ref.id


async def create(provider: MistralProvider, file_id: str, **changes: object) -> str:
    spec = JobSpec(endpoint=CHAT, model=MODEL, input_files=(file_id,), **changes)  # type: ignore[arg-type]
    return (await provider.create_job(spec)).id


def test_mistral_provider_satisfies_the_seam(provider: MistralProvider) -> None:
    assert isinstance(provider, BatchProvider)


# ---------------------------------------------------------------------------- files


async def test_upload_get_download_delete(provider: MistralProvider, tmp_path: Path) -> None:
    content = chat_lines(10)
    ref = await provider.upload_file(
        write(tmp_path, "local.jsonl", content), filename="job-1.jsonl"
    )
    assert (ref.filename, ref.size_bytes, ref.purpose) == ("job-1.jsonl", len(content), "batch")
    assert (ref.sample_type, ref.source, ref.num_lines) == ("batch_request", "upload", 10)
    assert ref.created_at is not None and ref.created_at > 1e9

    got = await provider.get_file(ref.id)
    assert (got.id, got.filename, got.size_bytes, got.deleted) == (
        ref.id,
        "job-1.jsonl",
        len(content),
        False,
    )

    size = await provider.download_file(ref.id, tmp_path / "back.jsonl")
    assert size == len(content)
    assert (tmp_path / "back.jsonl").read_bytes() == content

    await provider.delete_file(ref.id)
    with pytest.raises(NotFound):
        await provider.get_file(ref.id)
    with pytest.raises(NotFound):
        await provider.download_file(ref.id, tmp_path / "gone.jsonl")
    assert not (tmp_path / "gone.jsonl").exists()
    assert provider.calls["upload_file"] == 1


@pytest.mark.parametrize("in_memory_up_to", [0, 1 << 20], ids=["streamed", "from-memory"])
async def test_upload_streamed_or_from_memory_sends_the_same_file(
    provider: MistralProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_memory_up_to: int,
) -> None:
    # A small file is read in one go and sent from memory, a larger one streamed from disk:
    # the provider gets the same file, name and size either way.
    monkeypatch.setattr(mistral_module, "IN_MEMORY_UPLOAD_BYTES", in_memory_up_to)
    content = chat_lines(50)
    ref = await provider.upload_file(write(tmp_path, "in.jsonl", content), filename="up.jsonl")
    assert (ref.filename, ref.size_bytes, ref.num_lines) == ("up.jsonl", len(content), 50)
    await provider.download_file(ref.id, tmp_path / "back.jsonl")
    assert (tmp_path / "back.jsonl").read_bytes() == content


async def test_upload_uses_the_local_name_by_default(
    provider: MistralProvider, tmp_path: Path
) -> None:
    ref = await provider.upload_file(write(tmp_path, "plain.jsonl", chat_lines(1)))
    assert ref.filename == "plain.jsonl"


@pytest.mark.parametrize("name", ["my batch é.jsonl", 'quote " and \\ back.jsonl', "x%20y.jsonl"])
async def test_upload_filename_round_trips_unencoded(
    provider: MistralProvider, tmp_path: Path, name: str
) -> None:
    ref = await provider.upload_file(write(tmp_path, "local.jsonl", chat_lines(1)), filename=name)
    assert ref.filename == name
    assert (await provider.get_file(ref.id)).filename == name
    assert [f.id for f in await provider.find_files(name)] == [ref.id]


async def test_upload_options_reach_the_provider(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    path = write(tmp_path, "a.jsonl", chat_lines(1))
    plain = await provider.upload_file(path)
    assert (plain.purpose, plain.visibility, plain.expires_at) == ("batch", "workspace", None)
    ref = await provider.upload_file(path, purpose="fine-tune", visibility="user", expiry=2)
    assert (ref.purpose, ref.visibility) == ("fine-tune", "user")
    assert ref.created_at is not None and ref.expires_at == ref.created_at + 2 * 3600
    (record,) = [f for f in emulator.files() if f["id"] == ref.id]
    assert (record["purpose"], record["visibility"]) == ("fine-tune", "user")
    assert record["expires_at"] == record["created_at"] + 2 * 3600


async def test_upload_filename_with_a_control_character_is_refused(
    provider: MistralProvider, tmp_path: Path
) -> None:
    with pytest.raises(BatchdError, match="control characters"):
        await provider.upload_file(write(tmp_path, "a.jsonl", b"{}"), filename="a\r\nb.jsonl")
    assert provider.calls["upload_file"] == 0


async def test_list_files_with_every_parameter(provider: MistralProvider, tmp_path: Path) -> None:
    for i in range(5):
        await upload(provider, tmp_path, f"alpha-{i}.jsonl", n=1)
    await upload(provider, tmp_path, "beta.jsonl", n=1)

    page = await provider.list_files(FileQuery(page=1, page_size=2, search="alpha"))
    assert (page.total, page.page, page.page_size, len(page.files)) == (5, 1, 2, 2)
    assert all(f.filename.startswith("alpha-") for f in page.files)

    query = FileQuery(
        search="ALPHA",
        purpose="batch",
        sample_types=("batch_request", "batch_result"),
        sources=("upload",),
        mimetypes=("application/jsonl",),
        include_total=True,
    )
    assert (await provider.list_files(query)).total == 5
    assert (await provider.list_files(FileQuery(search="alpha", sources=("mistral",)))).files == ()
    assert (await provider.list_files(FileQuery(search="alpha", purpose="ocr"))).files == ()
    untotalled = await provider.list_files(FileQuery(search="beta", include_total=False))
    assert len(untotalled.files) == 1


async def test_iter_and_find_files_walk_every_page(
    provider: MistralProvider, tmp_path: Path
) -> None:
    ids = {await upload(provider, tmp_path, f"job-{i:02d}.jsonl", n=1) for i in range(7)}
    await upload(provider, tmp_path, "other.jsonl", n=1)
    walked = [f.id async for f in provider.iter_files(FileQuery(search="job-", page_size=3))]
    assert sorted(walked) == sorted(ids)
    assert provider.calls["list_files"] == 3
    found = await provider.find_files("job-03")
    assert [f.filename for f in found] == ["job-03.jsonl"]


async def test_signed_url_serves_the_content_without_the_key(
    provider: MistralProvider, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    content = chat_lines(4)
    ref = await provider.upload_file(write(tmp_path, "in.jsonl", content))
    url = await provider.file_url(ref.id, expiry_hours=2)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == content
    with pytest.raises(ProviderPermanent):
        await provider.file_url(ref.id, expiry_hours=500)


# ---------------------------------------------------------------------------- jobs


async def test_create_get_and_collect_results(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    content = chat_lines(6) + bad_lines(["bad-1", "bad-2"])
    file_id = (await provider.upload_file(write(tmp_path, "in.jsonl", content))).id
    created = await provider.create_job(
        JobSpec(
            endpoint=CHAT,
            model=MODEL,
            input_files=(file_id,),
            metadata={"batchd_job": "j1"},
            timeout_hours=2,
        )
    )
    assert (created.state, created.raw_status, created.endpoint, created.model) == (
        JobState.PENDING,
        "QUEUED",
        CHAT,
        MODEL,
    )
    assert (created.input_files, dict(created.metadata), created.counts) == (
        (file_id,),
        {"batchd_job": "j1"},
        RequestCounts(),
    )
    assert created.created_at is not None and created.started_at is None

    done = await finish(provider, emulator, created.id)
    assert (done.state, done.counts) == (JobState.SUCCEEDED, RequestCounts(8, 8, 6, 2))
    assert done.output_file and done.error_file
    assert done.started_at is not None and done.completed_at is not None

    await provider.download_file(done.output_file, tmp_path / "out.jsonl")
    await provider.download_file(done.error_file, tmp_path / "err.jsonl")
    ok = [provider.parse_result_line(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    bad = [
        provider.parse_result_line(x) for x in (tmp_path / "err.jsonl").read_bytes().splitlines()
    ]
    assert sorted(line.custom_id for line in ok) == [f"q{i}" for i in range(6)]
    assert all(line.ok and line.status_code == 200 for line in ok)
    assert sorted(line.custom_id for line in bad) == ["bad-1", "bad-2"]
    assert all(not line.ok and isinstance(line.error, dict) for line in bad)


async def test_error_lines_with_bare_string_errors(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with serve(emulator_config(behaviour=Behaviour(error_field="string"))) as emu:
        provider = MistralProvider(fast_settings(emu.url), session)
        file_id = (await provider.upload_file(write(tmp_path, "x.jsonl", bad_lines(["b"])))).id
        done = await finish(provider, emu, await create(provider, file_id))
        assert done.error_file
        await provider.download_file(done.error_file, tmp_path / "err.jsonl")
        line = provider.parse_result_line((tmp_path / "err.jsonl").read_bytes().strip())
        assert isinstance(line.error, str) and not line.ok


async def test_inline_requests_and_inline_get(
    provider: MistralProvider, emulator: Emulator
) -> None:
    requests = tuple(
        {
            "custom_id": f"r{i}",
            "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        }
        for i in range(3)
    )
    created = await provider.create_job(
        MistralJobSpec(endpoint=CHAT, model=MODEL, requests=requests, timeout_hours=48)
    )
    assert created.input_files == ()
    await finish(provider, emulator, created.id)
    inline = await provider.get_job(created.id, inline=True)
    assert inline.outputs is not None
    assert sorted(o["custom_id"] for o in inline.outputs) == ["r0", "r1", "r2"]
    assert (await provider.get_job(created.id, inline=False)).outputs is None
    assert provider.calls["create_job"] == 1


async def test_an_inline_job_whose_outputs_stay_null_is_read_from_its_output_file(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Issue 13 item 16: the real API has answered ``outputs: null`` for a finished inline job;
    the client reads such a job, and its results come whole from the output file, which is
    all batchd ever uses."""
    requests = tuple(
        {"custom_id": f"r{i}", "body": {"messages": [{"role": "user", "content": "hi"}]}}
        for i in range(3)
    )
    async with serve(emulator_config(behaviour=Behaviour(outputs="null"))) as emu:
        provider = MistralProvider(fast_settings(emu.url), session)
        created = await provider.create_job(
            MistralJobSpec(endpoint=CHAT, model=MODEL, requests=requests)
        )
        done = await finish(provider, emu, created.id)
        inline = await provider.get_job(created.id, inline=True)
        plain = await provider.get_job(created.id)
        assert (done.state, plain.outputs, inline.outputs) == (JobState.SUCCEEDED, None, None)
        assert inline.output_file is not None and inline.counts.completed == 3
        size = await provider.download_file(inline.output_file, tmp_path / "out.jsonl")
        assert size > 0
        lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
        parsed = [provider.parse_result_line(raw) for raw in lines]
        assert sorted(p.custom_id for p in parsed) == ["r0", "r1", "r2"]
        assert all(p.ok for p in parsed)


async def test_agent_jobs(provider: MistralProvider) -> None:
    requests = ({"custom_id": "a", "body": {"inputs": "hello"}},)
    spec = MistralJobSpec(endpoint="/v1/conversations", requests=requests, agent_id="ag-1")
    created = await provider.create_job(spec)
    assert isinstance(created, MistralJob)
    assert (created.agent_id, created.model) == ("ag-1", None)
    found = await provider.list_jobs(MistralJobFilter(agent_id="ag-1"))
    assert [j.id for j in found.jobs] == [created.id]
    assert (await provider.list_jobs(MistralJobFilter(agent_id="ag-2"))).total == 0


async def test_list_jobs_with_every_filter(
    provider: MistralProvider, emulator: Emulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    file_id = await upload(provider, tmp_path, "in.jsonl", n=2)
    first = await create(provider, file_id, metadata={"batchd_job": "a", "route": "r1"})
    emulator.advance(10)
    second = await create(provider, file_id, metadata={"batchd_job": "b", "route": "r1"})
    other_model = (
        await provider.create_job(JobSpec(endpoint=CHAT, model="other", input_files=(file_id,)))
    ).id
    after_second = emulator.now()

    everything = await provider.list_jobs(JobFilter())
    assert [j.id for j in everything.jobs] == [other_model, second, first]  # -created
    assert (everything.total, everything.page, everything.page_size) == (3, 0, 100)
    oldest_first = await provider.list_jobs(JobFilter(order_by="created"))
    assert [j.id for j in oldest_first.jobs] == [first, second, other_model]

    paged = await provider.list_jobs(JobFilter(page=1, page_size=2))
    assert ([j.id for j in paged.jobs], paged.total) == ([first], 3)

    assert [j.id for j in (await provider.list_jobs(JobFilter(model="other"))).jobs] == [
        other_model
    ]
    tagged = await provider.list_jobs(JobFilter(metadata={"batchd_job": "b", "route": "r1"}))
    assert [j.id for j in tagged.jobs] == [second]
    assert (await provider.list_jobs(JobFilter(metadata={"route": "r1"}))).total == 2

    recent = await provider.list_jobs(JobFilter(created_after=after_second - 5))
    assert first not in {j.id for j in recent.jobs} and second in {j.id for j in recent.jobs}

    await provider.cancel_job(first)
    cancelling = await provider.list_jobs(JobFilter(states=(JobState.CANCELLING,)))
    assert [j.id for j in cancelling.jobs] == [first]
    pending = await provider.list_jobs(JobFilter(states=(JobState.PENDING, JobState.RUNNING)))
    assert {j.id for j in pending.jobs} == {second, other_model}
    assert (await provider.list_jobs(JobFilter(states=(JobState.UNKNOWN,)))).total == 0

    async with serve(emulator_config(api_keys=(KEY, "second-key"))) as emu2:
        mine = MistralProvider(fast_settings(emu2.url), session)
        theirs = MistralProvider(fast_settings(emu2.url, api_key=Secret("second-key")), session)
        my_file = await upload(mine, tmp_path, "m.jsonl", n=1)
        their_file = await upload(theirs, tmp_path, "t.jsonl", n=1)
        my_job = await create(mine, my_file)
        await create(theirs, their_file)
        assert (await mine.list_jobs(JobFilter())).total == 2
        by_me = await mine.list_jobs(MistralJobFilter(created_by_me=True))
        assert [j.id for j in by_me.jobs] == [my_job]


async def test_iter_jobs_walks_every_page(provider: MistralProvider, tmp_path: Path) -> None:
    file_id = await upload(provider, tmp_path, "in.jsonl", n=1)
    ids = [await create(provider, file_id, metadata={"batchd_job": "x"}) for _ in range(5)]
    await create(provider, file_id, metadata={"batchd_job": "y"})
    walked = [
        j.id async for j in provider.iter_jobs(JobFilter(metadata={"batchd_job": "x"}, page_size=2))
    ]
    assert sorted(walked) == sorted(ids)
    assert provider.calls["list_jobs"] == 3  # pages 0, 1, 2; total says stop


async def test_cancel_then_delete(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    job_id = await create(provider, await upload(provider, tmp_path, "in.jsonl"))
    cancelling = await provider.cancel_job(job_id)
    assert (cancelling.state, cancelling.raw_status) == (
        JobState.CANCELLING,
        "CANCELLATION_REQUESTED",
    )
    again = await provider.cancel_job(job_id)  # idempotent
    assert again.state is JobState.CANCELLING
    assert (await finish(provider, emulator, job_id)).state is JobState.CANCELLED
    await provider.delete_job(job_id)
    with pytest.raises(NotFound):
        await provider.get_job(job_id)


# ---------------------------------------------------------------------------- errors


async def test_wrong_key_is_an_auth_error_sent_once(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    provider = MistralProvider(fast_settings(emulator.url, api_key=Secret("wrong-key")), session)
    emulator.reset_stats()
    with pytest.raises(AuthError) as info:
        await provider.list_jobs(JobFilter())
    assert info.value.status == 401
    assert emulator.stats()["total"] == 1
    assert "wrong-key" not in str(info.value)


async def test_unknown_ids_are_not_found(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    missing = str(uuid.uuid4())
    for call in (
        provider.get_job(missing),
        provider.cancel_job(missing),
        provider.get_file(missing),
    ):
        with pytest.raises(NotFound):
            await call
    emulator.reset_stats()
    with pytest.raises(NotFound):
        await provider.download_file(missing, tmp_path / "x")
    assert emulator.stats()["total"] == 1


async def test_validation_error_carries_the_message(
    provider: MistralProvider, emulator: Emulator, tmp_path: Path
) -> None:
    file_id = await upload(provider, tmp_path, "in.jsonl")
    emulator.reset_stats()
    with pytest.raises(ProviderPermanent) as info:
        await create(provider, file_id, timeout_hours=500)
    assert type(info.value) is ProviderPermanent
    assert info.value.status == 422
    assert "timeout_hours" in info.value.message
    assert emulator.stats()["total"] == 1
    assert emulator.jobs() == []


async def test_create_with_an_unknown_input_file_is_refused(provider: MistralProvider) -> None:
    spec = JobSpec(endpoint=CHAT, model=MODEL, input_files=(str(uuid.uuid4()),))
    with pytest.raises(ProviderPermanent):
        await provider.create_job(spec)
