"""What the loops rely on from any provider, run against every implementation (``conftest``).

The submitter stages a chunk's neutral requests the provider's way (encoded and uploaded as a
file, or streamed inline by the create) and creates a job tagged with batchd's metadata, and
after an ambiguous create finds it again from that tag; the tracker refreshes many jobs by a tag and
state filter, or one by id; the collector downloads the result files and reads their lines with
the provider's own parser; cancels and deletes are safe to repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchd.errors import NotFound, ProviderPermanent
from batchd.models import ACTIVE, PROVIDER_STATES, TERMINAL, JobState
from batchd.providers.base import BatchProvider, ChunkInput, JobSpec, ResultRefs, TagQuery

from .conftest import Contract

ENDPOINT = "/v1/chat/completions"


def requests(ids: list[str], bad: frozenset[str] = frozenset()) -> bytes:
    lines = []
    for custom_id in ids:
        messages = "not a list" if custom_id in bad else [{"role": "user", "content": custom_id}]
        body = {"messages": messages, "max_tokens": 4}
        lines.append(json.dumps({"custom_id": custom_id, "body": body}).encode() + b"\n")
    return b"".join(lines)


def chunk_of(
    tmp_path: Path, tag: str, ids: list[str], bad: frozenset[str] = frozenset()
) -> ChunkInput:
    path = tmp_path / f"{tag}.jsonl"
    path.write_bytes(requests(ids, bad))
    return ChunkInput(path, tag, ENDPOINT, "mistral-small-latest")


async def created(
    provider: BatchProvider,
    tmp_path: Path,
    tag: str,
    ids: list[str],
    bad: frozenset[str] = frozenset(),
) -> str:
    """Stage and create the way the submitter does (``provider.staging``)."""
    chunk = chunk_of(tmp_path, tag, ids, bad)
    files: tuple[str, ...] = ()
    if provider.staging == "file":
        staged = provider.encode_input(chunk, tmp_path / f"{tag}.staged.jsonl")
        files = ((await provider.upload_file(staged, filename=f"batchd-{tag}.jsonl")).id,)
    spec = JobSpec(
        endpoint=ENDPOINT,
        model=chunk.model,
        input_files=files,
        metadata={
            "batchd": "bdcontract",
            "batchd_job": tag,
        },
        input=chunk,
    )
    snap = await provider.create_job(spec)
    assert snap.state in PROVIDER_STATES and snap.state not in TERMINAL
    assert snap.input_files == files and snap.endpoint == ENDPOINT
    assert snap.metadata["batchd_job"] == tag
    return snap.id


def needs_files(provider: BatchProvider) -> None:
    if provider.staging != "file":
        pytest.skip("inline staging: the provider has no input files")


async def test_an_encoded_input_is_the_same_every_time_and_keeps_every_request(
    contract: Contract, tmp_path: Path
) -> None:
    """An upload orphaned by a crash is found again by name and size: the encoding of a chunk
    must not change from one attempt to the next."""
    provider = contract.provider
    needs_files(provider)
    chunk = chunk_of(tmp_path, "enc", ["a", "b b/é", "c"])
    first = provider.encode_input(chunk, tmp_path / "one.jsonl").read_bytes()
    second = provider.encode_input(chunk, tmp_path / "two.jsonl").read_bytes()
    assert first == second
    assert [json.loads(line)["custom_id"] for line in first.splitlines()] == ["a", "b b/é", "c"]
    assert chunk.path.read_bytes() == requests(["a", "b b/é", "c"])  # the chunk is untouched


async def test_a_staged_input_is_found_by_name_and_read_back(
    contract: Contract, tmp_path: Path
) -> None:
    provider = contract.provider
    needs_files(provider)
    path = tmp_path / "in.jsonl"
    path.write_bytes(requests(["a", "b"]))
    ref = await provider.upload_file(path, filename="batchd-sub1-0.jsonl")
    assert ref.size_bytes == path.stat().st_size
    assert [f.id for f in await provider.find_files("batchd-sub1-0")] == [ref.id]
    assert (await provider.get_file(ref.id)).filename == "batchd-sub1-0.jsonl"
    assert await provider.download_file(ref.id, tmp_path / "back.jsonl") == ref.size_bytes
    assert (tmp_path / "back.jsonl").read_bytes() == path.read_bytes()


async def test_a_job_is_found_again_from_its_tag_alone(contract: Contract, tmp_path: Path) -> None:
    provider = contract.provider
    mine = await created(provider, tmp_path, "job-1", ["a"])
    await created(provider, tmp_path, "job-2", ["b"])
    found = [j.id async for j in provider.find_tagged(TagQuery({"batchd_job": "job-1"}))]
    assert found == [mine]
    assert (await provider.get_job(mine)).id == mine


async def test_many_jobs_are_refreshed_by_tag_and_state_over_every_page(
    contract: Contract, tmp_path: Path
) -> None:
    provider = contract.provider
    ids = [await created(provider, tmp_path, f"job-{i}", [f"r{i}"]) for i in range(5)]
    tagged = TagQuery({"batchd": "bdcontract"}, page_size=2)
    assert sorted([j.id async for j in provider.find_tagged(tagged)]) == sorted(ids)
    active = TagQuery({"batchd": "bdcontract"}, states=tuple(sorted(ACTIVE)), page_size=2)
    assert {j.id async for j in provider.find_tagged(active)} == set(ids)
    ended = await contract.finish(ids[0])  # (an emulator's clock may end the others too)
    assert ended.state in TERMINAL
    assert ids[0] not in {j.id async for j in provider.find_tagged(active)}
    assert [j.id async for j in provider.find_tagged(TagQuery({"batchd": "other"}))] == []


async def test_results_are_fetched_and_read_by_the_providers_parser(
    contract: Contract, tmp_path: Path
) -> None:
    """Whatever ids the provider sent, the lines fetched carry the user's (the chunk's)."""
    provider = contract.provider
    ids = ["ok-1", "ok 2/é", "bad-1"]
    job_id = await created(provider, tmp_path, "job-r", ids, bad=frozenset({"bad-1"}))
    snap = await contract.finish(job_id)
    assert snap.state is JobState.SUCCEEDED
    assert (snap.counts.total, snap.counts.succeeded, snap.counts.failed) == (3, 2, 1)
    folder = tmp_path / "results"
    refs = ResultRefs(job_id, snap.output_file, snap.error_file, tmp_path / "job-r.jsonl")
    fetched = await provider.fetch_results(refs, folder)
    again = await provider.fetch_results(refs, folder)  # a retried fetch replaces, never adds
    assert [f.path for f in again] == [f.path for f in fetched]
    lines = {}
    for got in fetched:
        assert got.path.parent == folder and got.size_bytes == got.path.stat().st_size
        for raw in got.path.read_bytes().splitlines():
            line = provider.parse_result_line(raw)
            lines[line.custom_id] = line.ok
    assert lines == {"ok-1": True, "ok 2/é": True, "bad-1": False}
    assert sorted(folder.glob("*.jsonl")) == sorted(f.path for f in fetched)


async def test_deleting_results_is_safe_to_repeat(contract: Contract, tmp_path: Path) -> None:
    """``delete_results`` removes the provider's result files (a provider without separate
    results does nothing); a second call, with everything gone, is not an error."""
    provider = contract.provider
    job_id = await created(provider, tmp_path, "job-d", ["a"], bad=frozenset())
    snap = await contract.finish(job_id)
    refs = ResultRefs(job_id, snap.output_file, snap.error_file, tmp_path / "job-d.jsonl")
    deleted = await provider.delete_results(refs)
    files = [f for f in (snap.output_file, snap.error_file) if f]
    assert sorted(deleted) == sorted(files)
    for file_id in files:
        with pytest.raises(NotFound):
            await provider.download_file(file_id, tmp_path / "gone.jsonl")
    assert await provider.delete_results(refs) == deleted  # gone already: still fine


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"no_custom_id": 1}'])
def test_a_line_that_is_not_a_result_is_refused(contract: Contract, raw: bytes) -> None:
    with pytest.raises(ProviderPermanent):
        contract.provider.parse_result_line(raw)


async def test_unknown_ids_are_not_found(contract: Contract, tmp_path: Path) -> None:
    provider = contract.provider
    unknown = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFound):
        await provider.get_job(unknown)
    if provider.staging != "file":  # no files to look up
        return
    with pytest.raises(NotFound):
        await provider.get_file(unknown)
    with pytest.raises(NotFound):
        await provider.download_file(unknown, tmp_path / "x")


async def test_a_cancelled_job_ends_and_repeating_the_cancel_is_safe(
    contract: Contract, tmp_path: Path
) -> None:
    provider = contract.provider
    job_id = await created(provider, tmp_path, "job-c", ["a", "b"])
    snap = await provider.cancel_job(job_id)
    assert snap.state in {JobState.CANCELLING, JobState.CANCELLED}
    again = await provider.cancel_job(job_id)
    assert again.state in {JobState.CANCELLING, JobState.CANCELLED}


async def test_a_deleted_input_is_gone(contract: Contract, tmp_path: Path) -> None:
    provider = contract.provider
    needs_files(provider)
    path = tmp_path / "in.jsonl"
    path.write_bytes(requests(["a"]))
    ref = await provider.upload_file(path)
    await provider.delete_file(ref.id)
    with pytest.raises(NotFound):
        await provider.download_file(ref.id, tmp_path / "back.jsonl")


async def test_a_probe_answers_with_the_account_s_job_count(
    contract: Contract, tmp_path: Path
) -> None:
    provider = contract.provider
    before = await provider.probe()
    await created(provider, tmp_path, "job-p", ["a"])
    after = await provider.probe()
    assert before is None or after == before + 1
