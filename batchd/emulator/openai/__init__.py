"""A local OpenAI Files + Batch API server that the official ``openai`` SDK accepts.

Run it with ``batchd emulator --provider openai`` or in-process::

    async with serve_openai(EmulatorConfig(speed=1000, seed=1)) as emu:
        client = OpenAI(api_key="k", base_url=emu.url + "/v1")

It serves ``/v1/files`` and ``/v1/batches`` as reference section 1 describes them (and the traps
of section 4: strict fields, ``has_more``, exclusive ``after`` cursors, ``x-request-id``), on
the Mistral emulator's machinery: the same emulated clock and ``speed``, ``seed``, API keys,
fault injection (routes such as ``POST /v1/batches``), admin endpoints (``/_emulator/...``) and
processing model. Only what differs lives here: the wire shapes (``wire``), input validation
(``scan``, ``checks``), response bodies (``responses``), result files (``generate``) and the
engine's OpenAI parts (``engine``).

Lifecycle: ``validating`` (the input is checked) → ``in_progress`` (``request_counts`` grow) →
``finalizing`` (result files being written) → ``completed``; ``failed`` when the input breaks a
file rule (``errors.data[]``: ``invalid_json_line`` with its line, ``duplicate_custom_id``,
``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``, or
``token_limit_exceeded`` when ``OpenAIOptions.enqueued_token_limit`` is set and the open batches
of the same key and model would pass it); ``expired`` after 24 emulated hours with the results
done so far; cancel → ``cancelling`` → ``cancelled`` with partial results.

Choices where the reference is silent (documented, not verified):

- The requests an expired or cancelled batch never ran get error lines (``response: null``,
  ``error.code`` ``batch_expired`` / ``batch_cancelled``) and count as ``failed`` once it has
  ended, so that ``completed + failed`` is the number of lines in its files.
- A body its endpoint refuses (no model, no ``messages``/``input``/``prompt``, a bad
  ``max_tokens``) is a per-request 400 line in the error file, never a failed batch.
- Cancelling a ``cancelling``/``cancelled`` batch answers it unchanged; an ended or
  ``finalizing`` one is 409. An unknown ``after`` cursor gives an empty page. A create naming
  an unknown file, or one whose purpose is not ``batch``, is 400.
- Uploads with ``purpose=batch`` expire after 30 days unless ``expires_after`` says otherwise,
  and are refused over 200 MB (``OpenAIOptions``); outputs are ``purpose: batch_output``.
"""

from __future__ import annotations

from batchd.emulator.openai.engine import OpenAIOptions
from batchd.emulator.openai.server import OpenAIEmulator, serve_openai

__all__ = ["OpenAIEmulator", "OpenAIOptions", "serve_openai"]
