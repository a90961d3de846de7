"""The provider seam: ``BatchProvider`` and the provider-neutral models it speaks.

A provider's own fields and parameters extend these models in its module (Mistral's:
``providers/mistral_models.py``); the loops only read the neutral ones.

Loops talk to providers only through this protocol. Raw provider vocabulary (status strings,
field names) never leaks past the provider module; the raw status is kept only for display.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from batchd.models import JobState, RequestCounts
from batchd.secret import Secret


@dataclass(frozen=True, slots=True)
class ProviderJobError:
    """A job-level error as the provider reports it (Mistral ``errors[]``)."""

    message: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class FileRef:
    id: str
    filename: str
    size_bytes: int
    created_at: float | None = None
    purpose: str | None = None
    sample_type: str | None = None
    source: str | None = None
    num_lines: int | None = None
    mimetype: str | None = None
    deleted: bool = False
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the provider says about one batch job, right now."""

    id: str
    state: JobState  # one of models.PROVIDER_STATES
    raw_status: str
    endpoint: str
    model: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    counts: RequestCounts = RequestCounts()
    input_files: tuple[str, ...] = ()
    output_file: str | None = None
    error_file: str | None = None
    errors: tuple[ProviderJobError, ...] = ()
    created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None


def carries_metadata(job: JobSnapshot, wanted: Mapping[str, str]) -> bool:
    """Whether ``job`` carries every ``wanted`` key/value pair: the client-side check of a
    list's metadata filter, whose handling by the real server is unverified."""
    return all(job.metadata.get(key) == value for key, value in wanted.items())


Staging = Literal["file", "inline"]
"""How a provider receives a job's requests: ``file``, uploaded first (``encode_input`` then
``upload_file``) and named by id in the create (``JobSpec.input_files``); ``inline``, sent in
the create call itself, which streams them from ``JobSpec.input``."""


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """One job's requests as batchd holds them: a file of neutral request lines, each
    ``{"custom_id": str, "body": {...}}`` (compact JSON, UTF-8, newline-terminated, in input
    order; ``providers.staging.read_requests`` reads them). The file is batchd's chunk under
    ``work/`` and lives until the job's submission is done. A provider encodes the lines into
    its own wire format when the job is submitted, never at intake."""

    path: Path
    job_id: str  # batchd's job id (the create is tagged with it: ``batchd_job``)
    endpoint: str
    model: str | None = None  # the route's model; a line's body may name its own


@dataclass(frozen=True, slots=True)
class JobSpec:
    """Everything needed to create one batch job: ``input_files`` (a file-staging provider) and
    ``input`` (set by the submitter for every job; an inline-staging provider streams it in the
    create call, a file-staging one may ignore it). Mistral's in-memory inline ``requests`` are
    its own (``MistralJobSpec``)."""

    endpoint: str
    model: str | None = None
    input_files: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    timeout_hours: int = 24
    input: ChunkInput | None = None


@dataclass(frozen=True, slots=True)
class ResultRefs:
    """Where one ended job's results are at the provider, as recorded when it ended."""

    job_id: str  # the provider's job id
    output_file: str | None = None
    error_file: str | None = None
    # The job's requests (neutral lines, ``ChunkInput.path``): a provider that sent other
    # custom_ids than the user's maps the ids back from it (see ``BatchProvider``).
    chunk: Path | None = None
    batchd_job: str | None = None  # batchd's job id (whose ids a provider sent, if its own)


@dataclass(frozen=True, slots=True)
class Fetched:
    """One results file ``fetch_results`` wrote."""

    path: Path
    size_bytes: int
    source: str  # the provider's id for what was fetched (a file id, a job id)


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One line of an output or error file, in neutral form.

    ``error`` is whatever the provider put there (an object, a bare string or None). A request
    succeeded when it has a status below 400 and no error."""

    custom_id: str
    status_code: int | None
    body: Any = None
    error: Any = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and self.status_code < 400 and not self.error


OrderBy = Literal["created", "-created"]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Filters of a provider's paged jobs list (Mistral's ``list_jobs``/``iter_jobs``, which
    ``batchd remote`` uses; the loops use ``find_tagged``). ``states`` are neutral; the
    provider maps them to its own statuses."""

    page: int = 0
    page_size: int = 100
    model: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_after: float | None = None
    states: tuple[JobState, ...] = ()
    order_by: OrderBy = "-created"


@dataclass(frozen=True, slots=True)
class TagQuery:
    """Jobs batchd created, found again by the tag it put on them (``batchd``, ``batchd_job``,
    ``batchd_submission``). How is the provider's business: a server-side metadata filter
    (Mistral), a scan of its recent jobs, or another means."""

    tag: Mapping[str, str]
    states: tuple[JobState, ...] = ()  # any state when empty
    created_after: float | None = None  # a provider may return older jobs too
    page_size: int = 100  # a hint, for providers that list in pages
    # The job's requests, with ``{"batchd_job": id}``: a provider whose jobs carry no tag
    # (Anthropic) finds the job by what it holds instead (see ``providers.anthropic``).
    input: ChunkInput | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: tuple[JobSnapshot, ...]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """Per-job limits used to split a submission into chunks."""

    max_requests_per_job: int = 100_000
    max_bytes_per_job: int = 500_000_000  # Mistral: 512 MB per file (decimal, to be safe)
    max_inline_requests: int = 10_000
    max_metadata_key_chars: int = 32
    max_metadata_value_chars: int = 512


@runtime_checkable
class BatchProvider(Protocol):
    """One provider account. Upload and create are never retried blindly by the implementation:
    the caller reconciles through ``find_tagged`` / ``find_files`` instead.

    **custom_ids.** The result lines ``fetch_results`` writes carry the user's custom_ids (the
    ones in the chunk). A provider whose API restricts them (Anthropic: 1 to 64 characters of
    ``[A-Za-z0-9_-]``) sends ids of its own, derived from the job and each request's index in
    the chunk (deterministic, so nothing needs storing: ``providers.staging.indexed_id``), and
    maps them back in ``fetch_results`` from ``ResultRefs.chunk``."""

    name: str
    limits: ProviderLimits
    staging: Staging  # how the requests reach the provider (see ``Staging``)

    async def probe(self) -> int | None:
        """One cheap authenticated call (``batchd check``): how many jobs the account has, or
        None when the provider does not say. Raises ``AuthError`` for a refused key and
        ``ProviderError`` when the provider cannot be reached."""
        ...

    # staging (file staging; an inline provider's create streams ``JobSpec.input`` instead)
    def encode_input(self, chunk: ChunkInput, scratch: Path) -> Path:
        """The file to upload for ``chunk``, in the provider's input line format: the chunk
        file itself when its neutral lines already are that format (Mistral), else ``scratch``
        written whole (atomically) with the encoded lines. Same chunk, same bytes (an upload
        orphaned by a crash is found again by name and size). Blocking: the caller runs it in a
        worker thread. Never called for an inline provider."""
        ...

    # files
    async def upload_file(self, path: Path, *, filename: str | None = None) -> FileRef: ...
    async def find_files(self, search: str) -> list[FileRef]: ...
    async def get_file(self, file_id: str) -> FileRef: ...
    async def delete_file(self, file_id: str) -> None: ...
    async def download_file(self, file_id: str, to_path: Path) -> int:
        """Stream the content to ``to_path`` (replacing it); return the byte count, verified
        against Content-Length. Raises ``NotFound`` when the content is gone."""
        ...

    # jobs
    async def create_job(self, spec: JobSpec) -> JobSnapshot: ...
    async def get_job(self, job_id: str) -> JobSnapshot: ...
    def find_tagged(self, query: TagQuery) -> AsyncIterator[JobSnapshot]:
        """Every job carrying every pair of ``query.tag`` (checked by the implementation,
        whatever its server did), in one of ``query.states`` (any when empty): how the loops
        find a job after an ambiguous create, refresh many open jobs at once, and look for
        duplicates. Bounded: never loops."""
        ...

    async def cancel_job(self, job_id: str) -> JobSnapshot: ...
    async def delete_job(self, job_id: str) -> None: ...

    # results
    async def fetch_results(self, refs: ResultRefs, folder: Path) -> list[Fetched]:
        """Fetch an ended job's results into ``folder`` (made if missing) as visible
        ``*.jsonl`` files in the provider's line format, replacing what an earlier fetch left
        there; return what was written. Each file is whole or absent (verified length, then
        renamed). Raises ``NotFound`` when the content is gone."""
        ...

    async def delete_results(self, refs: ResultRefs) -> list[str]:
        """Delete the provider's copy of an ended job's results once batchd holds them (when
        ``[collect] delete_result_files`` is set); return the ids deleted. One already gone is
        not an error; one that cannot be deleted is logged and left. A provider that keeps no
        separate results (or cannot delete them) does nothing and returns ``[]``."""
        ...

    def parse_result_line(self, raw: bytes) -> ResultLine:
        """Parse one line of an output/error file leniently. Raises ``ProviderPermanent`` when
        the line is not a JSON object with a ``custom_id``."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Runtime settings of one configured provider (built by ``config_providers``, or by hand
    in tests and ``batchd remote --base-url``)."""

    name: str
    kind: str = "mistral"  # a registered kind (``batchd.providers.registry``)
    base_url: str = ""  # "": the kind's default (``ProviderKind.base_url``)
    api_key: Secret | None = None
    requests_per_second: float = 5.0  # client-side rate limit; <= 0 disables it
    timeout_s: float = 60.0  # per call (connect + headers + body) for everything but downloads
    connect_timeout_s: float = 10.0
    download_timeout_s: float = 3600.0  # whole download; reads also time out on sock_read
    read_retries: int = 6  # attempts beyond the first, for idempotent reads only
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    limits: ProviderLimits = ProviderLimits()
    # The kind's own settings, validated (a ``kind_options.KindOptions``; read with
    # ``kind_options.options_of``); None: the kind's defaults.
    options: object | None = None
