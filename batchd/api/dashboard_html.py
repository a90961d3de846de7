"""The dashboard's HTML, rendered on the server from plain values (pure; every value escaped).

Readable without JavaScript: tables, links, forms. ``templates/layout.html`` adds the live part
(the event stream, and a refresh every few seconds while something is open)."""

from __future__ import annotations

import json
from html import escape
from importlib.resources import files
from string import Template
from typing import Any, Final

from batchd.event_types import EVENT_TYPES

_LAYOUT: Final = Template(files("batchd.api").joinpath("templates/layout.html").read_text())


def page(title: str, body: str, *, live: str = "") -> str:
    return _LAYOUT.substitute(
        title=escape(title),
        body=body,
        live=escape(live),
        event_types=json.dumps(sorted(EVENT_TYPES)),
    )


def e(value: object) -> str:
    return "" if value is None else escape(str(value))


def table(headers: list[str], rows: list[str], *, empty: str, attrs: str = "") -> str:
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def rate_eta(row: dict[str, Any], elapsed_s: float) -> tuple[str, str]:
    """Requests per minute since acceptance, and the time left at that rate."""
    done, total = row["completed"] or 0, row["requests"] or 0
    if elapsed_s <= 0 or done <= 0:
        return "-", "-"
    per_s = done / elapsed_s
    left = max(0, total - done) / per_s
    return f"{per_s * 60:.1f}/min", _duration(left)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cancel_form(sub_id: str) -> str:
    return (
        f'<form class="inline" method="post" action="/submissions/{e(sub_id)}/cancel">'
        f'<button type="submit" data-cancel="{e(sub_id)}">Cancel</button></form>'
    )


def shown_state(row: dict[str, Any]) -> str:
    if row["cancel_requested"] and row["state"] == "active":
        return "cancelling"
    return str(row["outcome"] or row["state"])


def open_row(row: dict[str, Any], elapsed_s: float, *, can_cancel: bool) -> str:
    rate, eta = rate_eta(row, elapsed_s)
    done, total = row["completed"] or 0, row["requests"] or 0
    bar = f'<progress max="{total}" value="{done}"></progress>' if total else ""
    action = cancel_form(row["id"]) if can_cancel and not row["cancel_requested"] else ""
    return (
        f'<tr data-open data-id="{e(row["id"])}"><td><a href="/submissions/{e(row["id"])}">'
        f"{e(row['name'])}</a></td><td>{e(row['route'])}</td>"
        f'<td class="state">{e(shown_state(row))}</td>'
        f'<td>{bar} <span class="progress">{done}/{total}</span></td>'
        f'<td class="num failed">{e(row["failed"])}</td><td class="num">{e(rate)}</td>'
        f'<td class="num">{e(eta)}</td><td>{e(row["created"])}</td><td>{action}</td></tr>'
    )


def finished_row(row: dict[str, Any]) -> str:
    state = shown_state(row)
    links = ""
    if row["state"] == "done":
        base = f"/v1/submissions/{e(row['id'])}"
        links = f'<a href="{base}/results">results</a> · <a href="{base}/errors">errors</a>'
    reason = f'<span class="error">{e(row["reason"])}</span>' if row["reason"] else ""
    return (
        f'<tr data-id="{e(row["id"])}"><td><a href="/submissions/{e(row["id"])}">'
        f"{e(row['name'])}</a></td><td>{e(row['route'])}</td>"
        f'<td class="state outcome-{e(state)} state-{e(row["state"])}">{e(state)}</td>'
        f'<td class="num">{e(row["completed"])}/{e(row["requests"])}</td>'
        f'<td class="num">{e(row["failed"])}</td><td>{e(row["finished"])}</td>'
        f"<td>{links}{reason}</td></tr>"
    )


def event_row(event: dict[str, Any]) -> str:
    sub = event["submission_id"]
    link = f'<a href="/submissions/{e(sub)}">{e(sub)}</a>' if sub else ""
    data = ", ".join(f"{k}={v}" for k, v in event["data"].items() if k != "submission_id")
    return (
        f"<tr><td>{e(event['created'])}</td><td>{e(event['type'])}</td><td>{link}</td>"
        f'<td class="muted">{e(data[:200])}</td></tr>'
    )


def provider_row(name: str, paused_until: str | None, rate_limited: float, error: str) -> str:
    status = f"paused until {e(paused_until)}" if paused_until else "ok"
    return (
        f"<tr><td>{e(name)}</td><td>{status}</td><td class='num'>{rate_limited:g}</td>"
        f'<td class="error">{e(error)}</td></tr>'
    )


def job_row(job: dict[str, Any]) -> str:
    counts = job["counts"]
    return (
        f"<tr><td>{e(job['chunk_index'])}</td><td>{e(job['id'])}</td>"
        f"<td>{e(job['provider_job_id'])}</td><td class='state'>{e(job['state'])}</td>"
        f"<td class='num'>{e(counts['completed'])}/{e(job['line_count'])}</td>"
        f"<td class='num'>{e(counts['failed'])}</td><td>{e(job['result_state'])}</td>"
        f"<td>{e(job['created_at'])}</td><td>{e(job['started_at'])}</td>"
        f"<td>{e(job['terminal_at'])}</td><td class='error'>{e(job['last_error'])}</td></tr>"
    )


def submit_form(routes: list[str], message: str = "") -> str:
    options = "".join(f'<option value="{e(r)}">{e(r)}</option>' for r in routes)
    note = f'<p class="error" id="message">{e(message)}</p>' if message else ""
    return (
        f"<h2>Submit a batch file</h2>{note}"
        '<form method="post" action="/submit" enctype="multipart/form-data">'
        f'<p><label>Route <select name="route">{options}</select></label></p>'
        '<p><label>Name (optional, ends in .jsonl) <input name="name"></label></p>'
        '<p><label>File <input type="file" name="file" accept=".jsonl" required></label></p>'
        '<p><button type="submit">Submit</button></p></form>'
    )
