"""A faithful local Anthropic Message Batches server (``batchd emulator --provider anthropic``).

It serves ``/v1/messages/batches`` (create, list, retrieve, cancel, delete, results) as
reference section 2 describes, so that the official ``anthropic`` SDK, with strict response
validation, works against it unchanged except for ``base_url``. It shares the Mistral
emulator's configuration (``EmulatorConfig``: API keys, speed, seed, ``ProcessingModel``),
emulated clock, fault rules and admin endpoints (``/_emulator/...``); the batches, their
lifecycle and the wire format are its own.

- Auth: ``x-api-key`` or ``Authorization: Bearer`` (401 ``authentication_error``), and an
  ``anthropic-version`` header of any value (400 without one). Batches are scoped to the key.
- Create: ``{"requests": [{"custom_id", "params"}]}``, 1..100,000 requests, at most 256 MB;
  a malformed item, a ``custom_id`` outside ``^[a-zA-Z0-9_-]{1,64}$`` or a duplicate one is a
  400. Params are checked later: the ones the Messages API refuses (no model, ``max_tokens``
  below 1, no messages, ``stream``) become ``errored`` results.
- Lifecycle (emulated seconds, ``ProcessingModel``): ``in_progress`` from creation; requests
  are processed from ``queue_s`` on, over ``max(min_run_s, ceil(n/parallelism) * request_s)``
  (both with the seeded jitter); the batch is ``ended`` once its results file is written.
  Counts are ``processing = n`` until then, as the real API's. A batch still running 24 hours
  after creation ends at ``expires_at``: the requests not processed are ``expired``. Cancel:
  ``canceling`` (``cancel_initiated_at``) for ``cancel_s``, then ``ended`` with the rest
  ``canceled``; cancelling an ended batch answers it unchanged. ``archived_at`` stays null.
- Times are RFC 3339 strings with microseconds and ``Z``; ``results_url`` is absolute on this
  server (``/v1/messages/batches/{id}/results``, authenticated like the rest, 404 before the
  end); ``DELETE`` works on an ended batch only (400 otherwise) and removes it and its results.
- List: newest first; ``after_id`` (older than it) and ``before_id`` (newer than it) are
  exclusive; ``limit`` 1..1000 (default 20); ``has_more``, ``first_id``, ``last_id``. A
  cursor naming an id never created is a 400.
- Results: one line per request in a reproducible shuffled order; ``succeeded`` with a
  ``Message`` (text from the prompt, ``stop_reason`` ``end_turn`` or ``max_tokens``, usage
  counting words as tokens), ``errored`` with the nested error, ``canceled``, ``expired``.
- Faults: every kind of ``--fault`` on the ``/v1`` routes (statuses in Anthropic's error
  shape; ``truncate`` on the results download; ``late``/``late_reset`` on create and cancel).
"""

from __future__ import annotations

from batchd.emulator.anthropic.server import AnthropicEmulator, serve_anthropic

__all__ = ["AnthropicEmulator", "serve_anthropic"]
