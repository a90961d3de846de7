"""Per-file options: a sidecar ``<name>.jsonl.json`` dropped into the inbox before the file.

It is a JSON object with any of ``model``, ``endpoint``, ``metadata`` (merged over the route's),
``timeout_hours`` and ``allow_duplicate`` (true: accept this file even if the same content ran
before). It is validated like the configuration: a bad sidecar rejects its batch file, and the
reason file names the sidecar, the key and the problem. The sidecar is consumed: claimed with
its file into ``processing/``, then moved to ``done/<name>/options.json`` or, if the file is
rejected, to ``rejected/<name>.jsonl.json``. ``batchd submit --model ... --allow-duplicate``
writes one for you.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchd.config import Endpoint, Metadata, ModelName
from batchd.errors import IntakeRejected, Problem
from batchd.spool import UnsafeFile, lstat_identity, move, name_allowed, open_dropped

SUFFIX: Final = ".json"
MAX_BYTES: Final = 64 * 1024
OPTIONS_IN_RESULTS: Final = "options.json"


class FileOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: ModelName | None = None
    endpoint: Endpoint | None = None
    metadata: Metadata = Field(default_factory=dict)
    timeout_hours: Annotated[int, Field(ge=1, le=168, strict=True)] | None = None
    allow_duplicate: Annotated[bool, Field(strict=True)] = False

    def overrides(self, metadata: Mapping[str, str]) -> dict[str, Any]:
        """The submission fields these options change (``metadata`` merged over the route's)."""
        found: dict[str, Any] = {"metadata": {**metadata, **self.metadata}}
        for key in ("model", "endpoint", "timeout_hours"):
            if getattr(self, key) is not None:
                found[key] = getattr(self, key)
        return found


def sidecar_of(batch: Path) -> Path:
    """``inbox/x.jsonl`` -> ``inbox/x.jsonl.json`` (also ``processing/<ino>-x.jsonl.json``)."""
    return batch.with_name(batch.name + SUFFIX)


def parse_options(data: bytes, shown: str) -> FileOptions:
    """Validate a sidecar's bytes; ``IntakeRejected`` names ``shown``, the key and the problem."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntakeRejected([Problem(0, f"{shown}: not a JSON object ({exc})")]) from None
    if not isinstance(raw, dict):
        raise IntakeRejected([Problem(0, f"{shown}: must be a JSON object of options")])
    try:
        return FileOptions.model_validate(raw)
    except ValidationError as exc:
        raise IntakeRejected(_problems(exc, shown)) from None


def _problems(exc: ValidationError, shown: str) -> list[Problem]:
    from batchd.config_load import dotted
    from batchd.config_rules import closest

    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            text = "unknown key" + closest(str(loc[-1]), list(FileOptions.model_fields))
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
        problems.append(Problem(0, f"{shown}: {dotted(loc)}: {text}"))
    return problems


def read_options(batch: Path, name: str) -> FileOptions | None:
    """The options in the sidecar of ``batch`` (None: there is none), named ``<name>.json`` in
    problems. Opened like a dropped file: no links, no FIFOs or devices, at most ``MAX_BYTES``."""
    sidecar, shown = sidecar_of(batch), name + SUFFIX
    try:
        fd, _ = open_dropped(sidecar.parent, sidecar.name, max_bytes=MAX_BYTES)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise IntakeRejected([Problem(0, f"{shown}: {exc}")]) from None
    except OSError as exc:
        raise IntakeRejected([Problem(0, f"{shown}: cannot read it ({exc.strerror})")]) from None
    try:
        foreign = _foreign_owner(os.fstat(fd).st_uid, batch, name)
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if foreign is not None:
        raise IntakeRejected([Problem(0, f"{shown}: {foreign}")])
    return parse_options(data, shown)


def _foreign_owner(sidecar_uid: int, batch: Path, name: str) -> str | None:
    """In a shared inbox anyone may create ``<name>.jsonl.json`` before another user's file
    arrives, and the sticky bit keeps that user from removing it: a sidecar applies only when
    its owner is the file's (or root, or batchd itself). None: it may apply."""
    try:
        owner = batch.lstat().st_uid
    except OSError:
        return None  # no file (yet): decided when the file is read
    if sidecar_uid in {owner, 0, os.geteuid()}:
        return None
    return (
        f"belongs to another user (uid {sidecar_uid}) than {name} (uid {owner}), so it is "
        "not applied; remove it (its owner or root can), or drop the file under another name"
    )


def options_at_claim(batch: Path) -> FileOptions | None:
    """The sidecar's options, stored with the claim. A bad sidecar counts as none here: it is
    reported when the file is validated (it moves to processing/ with it, read again there)."""
    if not name_allowed(batch.name):
        return None
    try:
        return read_options(batch, batch.name)
    except IntakeRejected:
        return None


class RouteDefaults(Protocol):
    @property
    def endpoint(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def timeout_hours(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


def submission_options(route: RouteDefaults, given: FileOptions | None) -> dict[str, Any]:
    """A new submission's endpoint, model, timeout_hours and metadata: the route's, with the
    file's options over them."""
    fields: dict[str, Any] = {
        "endpoint": route.endpoint,
        "model": route.model,
        "timeout_hours": route.timeout_hours,
        "metadata": dict(route.metadata),
    }
    return {**fields, **(given.overrides(route.metadata) if given else {})}


def claim_sidecar(batch: Path, processing: Path) -> None:
    """Move ``<name>.jsonl.json`` from the inbox along with its claimed file (idempotent)."""
    if name_allowed(batch.name) and lstat_identity(sidecar_of(batch)) is not None:
        move(sidecar_of(batch), sidecar_of(processing))


def move_sidecar(source: Path, dest: Path) -> None:
    """A rejected file's sidecar goes with it (``rejected/<name>.jsonl.json``)."""
    if lstat_identity(sidecar_of(source)) is not None:
        move(sidecar_of(source), sidecar_of(dest))


def options_from_flags(
    *,
    model: str | None = None,
    endpoint: str | None = None,
    metadata: list[str] | None = None,
    timeout_hours: int | None = None,
    allow_duplicate: bool = False,
) -> FileOptions | None:
    """``batchd submit``'s flags as options (None: no flag given); ``--metadata KEY=VALUE``."""
    from batchd.errors import UsageError

    pairs: dict[str, str] = {}
    for item in metadata or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--metadata {item!r}: expected KEY=VALUE")
        pairs[key] = value
    given = {
        "model": model,
        "endpoint": endpoint,
        "timeout_hours": timeout_hours,
        "metadata": pairs or None,
        "allow_duplicate": allow_duplicate or None,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if not chosen:
        return None
    try:
        return FileOptions.model_validate(chosen)
    except ValidationError as exc:
        problems = _problems(exc, "options")
        raise UsageError("; ".join(p.reason.removeprefix("options: ") for p in problems)) from None


def write_sidecar(inbox: Path, name: str, options: FileOptions, *, mode: int = 0o640) -> Path:
    """Put ``<name>.json`` into the inbox atomically, before the file itself is renamed in."""
    from batchd.spool import write_atomic

    target = sidecar_of(inbox / name)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    data = options.model_dump_json(exclude_defaults=True, indent=2).encode() + b"\n"
    write_atomic(target, data, mode=mode)
    return target


def copy_with_sidecar(source: Path, inbox: Path, name: str, options: FileOptions | None) -> Path:
    """``batchd submit``: the sidecar first (intake reads it when it claims the file), then
    the file; the sidecar is taken back if the copy fails."""
    from batchd.submit_file import copy_into

    if options is None:
        return copy_into(source, inbox, name)
    if (inbox / name).exists():
        raise FileExistsError(errno.EEXIST, "exists", str(inbox / name))
    sidecar = write_sidecar(inbox, name, options)
    try:
        return copy_into(source, inbox, name)
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise
