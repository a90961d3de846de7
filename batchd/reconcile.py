"""The reconcile window of a create (pure decisions for the submitter; issue 12).

A create whose outcome batchd cannot know (a timeout, a reset, a 5xx, a crash while it was in
flight) may still take effect on the provider for a while: up to the client's create timeout
while the request is in flight, plus however long the provider keeps processing a request
whose client went away (``grace_s``). Until that window has passed, the job is only looked up
by its tag (with backoff); a new create is sent only once it has passed with nothing found.

The end of the window is committed before each create is sent and only ever moves later, so a
restart resumes the window where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchd.errors import NotFound, ProviderError, ProviderPermanent
from batchd.models import Job

# A job's provider copy was created after its row was; the lookup asks for jobs created since
# then, minus this much disagreement between batchd's clock and the provider's.
CLOCK_SKEW_S = 300.0
MIN_LOOKUP_GAP_S = 0.1  # a zero reconcile_delay_s must not make a busy loop of lookups
NOT_FOUND_WORDS = ("not found", "does not exist", "not exist", "no such", "unknown file")


@dataclass(frozen=True, slots=True)
class ReconcileWindow:
    create_timeout_s: float = 60.0  # the client's total timeout for one create call
    grace_s: float = 120.0  # a provider may still apply a create this long after its client left
    first_lookup_s: float = 5.0  # the first lookup after a create was sent or failed
    max_lookup_gap_s: float = 60.0  # lookups back off (doubling) up to this gap

    @property
    def length_s(self) -> float:
        return self.create_timeout_s + self.grace_s


def create_deadline(sent_at: float, window: ReconcileWindow, previous: float | None) -> float:
    """Until when the creates sent so far may take effect, once one more is sent at
    ``sent_at``: never earlier than ``previous``."""
    return max(previous or 0.0, sent_at + window.length_s)


def window_end(job: Job, window: ReconcileWindow) -> float:
    """The committed end of the job's window (a job in CREATING written before the window was
    recorded gets a whole window from its last change)."""
    if job.reconcile_until is not None:
        return job.reconcile_until
    return job.updated_at + window.length_s


def first_lookup_at(now: float, end: float, window: ReconcileWindow) -> float:
    return min(now + max(MIN_LOOKUP_GAP_S, window.first_lookup_s), max(end, now))


def next_lookup_at(now: float, lookups: int, end: float, window: ReconcileWindow) -> float | None:
    """After the ``lookups``-th lookup in a row found nothing: when to look again, or None when
    the window has passed (a new create may be sent). The last lookup is at the window's end."""
    if now >= end:
        return None
    base = max(MIN_LOOKUP_GAP_S, window.first_lookup_s)
    gap = min(max(window.max_lookup_gap_s, base), base * 2.0 ** min(max(lookups, 0), 30))
    return min(now + gap, end)


def had_no_effect(exc: ProviderError) -> bool:
    """A refusal that certainly created nothing: 429 and the 4xx refusals (400, 401, 403, 404,
    422, ...). Timeouts, resets and 5xx (a gateway may have passed the request on) are
    ambiguous."""
    return isinstance(exc, ProviderPermanent) or exc.status == 429


def input_file_gone(exc: ProviderError, input_file_id: str | None) -> bool:
    """The create was refused because its input file does not exist: a 404, or a 400/422 whose
    message names the input file as not found (issue 13 item 18)."""
    if isinstance(exc, NotFound):
        return True
    if exc.status not in {400, 422} or not input_file_id:
        return False
    text = f"{exc.message} {exc.body or ''}".lower()
    return input_file_id.lower() in text and any(word in text for word in NOT_FOUND_WORDS)
