"""A faithful local Mistral Files + Batch API server.

Run it with ``batchd emulator`` or in-process::

    async with serve(EmulatorConfig(speed=1000, seed=1)) as emu:
        client = Mistral(api_key="k", server_url=emu.url)

It speaks the wire protocol of reference section 1 (paths, query encodings, multipart fields,
JSON shapes, content types, status codes, error bodies) so that the official SDK works against
it unchanged. Jobs and file metadata live in memory; file contents live on disk under
``data_dir`` (a temporary directory by default). Nothing survives a restart: a ``data_dir``
that already holds files is not reloaded.

Time. Emulated time starts at the wall clock and runs ``speed`` times faster, plus whatever
``advance()`` (or ``POST /_emulator/advance``) adds. A job's status and counters are computed
from emulated time when read; one timer task materialises transitions (no task per job or per
request), see ``lifecycle`` and ``engine``.

Processing model (``ProcessingModel``, emulated seconds). QUEUED for ``queue_s`` while the input
is validated (``total_requests`` = 0), then RUNNING for ``max(min_run_s, ceil(n/parallelism) *
request_s)`` with the counters advancing linearly, then ``finalize_s`` more with full counters
while the result files are written ("finalizing"), then the terminal status. Both durations
carry a seeded per-job factor in ``[1-jitter, 1+jitter]`` so that jobs end at scattered times.
``timeout_hours`` counts from creation: when it runs out first the job ends TIMEOUT_EXCEEDED
with the results done so far. Cancel: CANCELLATION_REQUESTED with frozen counters for
``cancel_s``, then CANCELLED with the partial results. Real work (validating the input, writing
results at >100 MB/s) runs in worker threads; a job only shows its terminal status once its
files exist, and that real time (times ``speed``) is added to ``started_at``/``completed_at``.

Choices where the reference is silent or unverified (``Behaviour`` makes most configurable):

- Result files exist whenever at least one line belongs in them, on every terminal status
  (partial results after TIMEOUT_EXCEEDED and CANCELLED); requests never processed get no line.
  Lines are in arbitrary but reproducible order (each block of 64 is permuted).
- Error lines: ``{"id","custom_id","response":{"status_code":4xx,"body":{"object":"error",
  ...}},"error":{"message"}}``; ``error_field="string"`` makes ``error`` a bare string. A body
  its endpoint refuses is a per-request 400/422 line (wrapped FastAPI detail for 422), never a
  failed job. A body naming another model than the job is accepted: the job's model answers
  (Mistral's own inline example does this against the real API).
- An input that is not valid JSONL (a line that is not a JSON object, has no ``body`` object or
  a non-string ``custom_id``), has no requests or more than 1M fails the job from QUEUED with
  ``errors`` (identical problems grouped with a ``count``); ``started_at`` stays null. Blank
  lines are skipped; a missing ``custom_id`` becomes the request's index.
- Outputs are byte-for-byte reproducible: the response body depends only on (endpoint, model,
  body); ``created`` is a fixed epoch (``stable_created=False``: the job's end time); line ids
  are ``<index>-<uuid derived from the request>``. Chat/FIM content has exactly ``max_tokens``
  words (default ``default_max_tokens``; at most 32,768, as a context window would stop it), one
  token per word, with matching usage; embeddings
  have ``embedding_dim`` components (or ``output_dimension``) and norm ~1.
- OCR: one page object per page asked for in ``pages`` (a list of indexes from 0, or a string
  like ``"0,2-4"``; at most 1,000; the first page when not given), ``pages_processed`` to
  match; ``document_annotation`` is a JSON string that fits ``document_annotation_format``
  (``json_schema``: a deterministic value valid against the schema, see ``schema_fill``;
  ``json_object``: a small object; ``text`` or none: null). The document itself is never
  fetched, so any page index exists.
- Cancel is idempotent; on a terminal job it answers 200 with the job unchanged
  (``cancel_terminal="error"``: 400). A cancel that arrives while results are being written is
  too late and changes nothing.
- DELETE of a job works in any status (``delete_active="reject"``: 409 until terminal); the job
  disappears (404) and its result files stay.
- A path id that is not a UUID gets FastAPI's 422 (``invalid_id_status=404`` for 404).
- ``GET /v1/batch/jobs/{id}`` (and cancel) return ``outputs`` for jobs created with inline
  ``requests`` unless ``inline=false``, and for any job with ``inline=true`` (at most
  ``max_inline_outputs`` lines); null until terminal. ``outputs="null"`` keeps them null at
  every status, as the real API has done for an inline job (the SDK added a null check): the
  results are then only in ``output_file``/``error_file``.
- Jobs list: ``metadata`` is matched from exploded top-level query keys (every key that is not a
  known parameter, as the SDK sends it) and from ``metadata=<json>``; ``created_after`` is
  inclusive; ``created_by_me`` means created with the same API key; ``total`` counts every
  match (``metadata_filter="ignore"``: the metadata filter is parsed but not applied).
  Files list: newest first; ``search`` is a case-insensitive filename substring.
- Upload: ``purpose`` defaults to ``fine-tune``; ``expiry`` is read as hours and only echoed as
  ``expires_at``; a file over ``max_upload_bytes`` (512 MB) gets 413 with an object error;
  ``mimetype`` comes from the file name (``.jsonl`` -> ``application/jsonl``). An unknown
  input file on create is 404.
- Signed URLs point at ``/blob/{id}?se=&sp=r&sig=`` on this server, expire in emulated time
  and fail like a blob store (403/404 with an XML body).
- Bad requests never reach the engine and never answer 5xx: a body that is not JSON or is nested
  deeper than the parser goes, NaN/Infinity where a finite number is needed, ``page`` or
  ``page_size`` outside ``0..2**31-1``, an unknown key in an admin body get FastAPI's 422; a
  malformed multipart upload gets 400 ``There was an error parsing the body``; ``advance``
  takes at most 100 years at a time and never passes the year 9999 (400). Each refused request
  is logged in one line (``emulator.request_refused``); a request too malformed to reach the
  app (a broken request line or header) gets aiohttp's plain-text 400 and one
  ``emulator.bad_http`` line. Only an unexpected error is a 500 with a logged traceback.
- Faults (``--fault``, ``PUT /_emulator/faults``; see ``faults``): 429/500/502/503, latency,
  reset and truncated downloads per route and phase; and two for result files, as the real
  API has misbehaved: ``short_results`` writes the lines of only the first ``fraction`` of the
  processed requests while the counters count them all (mistralai/client-python#159),
  ``short_counts`` writes every line while the finished job counts only ``fraction`` of them.
- 401 is the gateway's ``{"message":"Unauthorized","request_id"}`` and comes before routing;
  429 is ``{"object":"error",...,"type":"rate_limited","code":"1300"}`` with ``Retry-After``;
  502 is an HTML page.

Limits: 10,000 jobs and 1M requests in total are fine (lists scan all jobs: ~10 ms at 10,000);
no per-workspace pending-requests quota; only the Files and Batch APIs are served.
"""

from __future__ import annotations

from batchd.emulator.config import Behaviour, EmulatorConfig, ProcessingModel
from batchd.emulator.faults import FaultConfig, FaultKind, FaultRule, Phase, parse_fault_spec
from batchd.emulator.server import Emulator, serve

__all__ = [
    "Behaviour",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "FaultKind",
    "FaultRule",
    "Phase",
    "ProcessingModel",
    "parse_fault_spec",
    "serve",
]
