"""The neutral provider models carry no Mistral-only field: those extend them in the Mistral
module, which ``batchd remote`` reads."""

from __future__ import annotations

import inspect
from dataclasses import fields

from batchd.models import JobState
from batchd.providers.base import BatchProvider, FileRef, JobFilter, JobSnapshot, JobSpec
from batchd.providers.mistral_models import MistralFile, MistralJob, MistralJobFilter
from batchd.providers.mistral_wire import jobs_query, parse_file, parse_job

MISTRAL_ONLY = {"agent_id", "outputs", "created_by_me", "visibility", "inline"}


def test_the_neutral_models_have_no_mistral_only_fields() -> None:
    for model in (JobSnapshot, JobSpec, JobFilter, FileRef):
        assert MISTRAL_ONLY.isdisjoint(f.name for f in fields(model)), model.__name__
    assert MISTRAL_ONLY.isdisjoint(inspect.signature(BatchProvider.get_job).parameters)


def test_the_mistral_client_still_reads_and_sends_them() -> None:
    job = parse_job({"id": "b", "status": "RUNNING", "agent_id": "ag", "outputs": [{"a": 1}]})
    assert isinstance(job, MistralJob) and job.state is JobState.RUNNING
    assert (job.agent_id, job.outputs) == ("ag", ({"a": 1},))
    ref = parse_file({"id": "f", "visibility": "user"})
    assert isinstance(ref, MistralFile) and ref.visibility == "user"
    query = dict(jobs_query(MistralJobFilter(agent_id="ag", created_by_me=True)))
    assert (query["agent_id"], query["created_by_me"]) == ("ag", "true")
    assert dict(jobs_query(JobFilter()))["created_by_me"] == "false"  # as the SDK sends it
