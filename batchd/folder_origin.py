"""The drop folder's origin: where a submission's file was, as the host that saw it.

A submission's origin (``Submission.origin``) is source-specific JSON. The drop folder's names
the host that saw the file (``host``: its host id, ``wiring.host_id``), the inbox path it was
dropped at, the ``processing/`` path it was claimed to, and the file's identity (``dev``,
``ino``). A path is never meaningful without its host: only the host that saw the file acts on
it (claims, intake recovery, the folder sink), whatever other instances share the store.

An origin without ``host`` was written before origins had one (migration 0006): it was seen by
the install that existed then, whose host id became the deployment's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchd.models import Submission

SOURCE = "folder"


@dataclass(frozen=True, slots=True)
class FolderOrigin:
    host: str | None  # None: the deployment's first host (an origin older than migration 0006)
    inbox: str
    processing: str
    dev: int | None
    ino: int

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"source": SOURCE, "inbox": self.inbox}
        found |= {"processing": self.processing, "dev": self.dev, "ino": self.ino}
        return found if self.host is None else found | {"host": self.host}

    @classmethod
    def of(cls, sub: Submission) -> FolderOrigin | None:
        """The submission's folder origin (None: it came from another source, or none)."""
        origin = sub.origin
        if origin is None or origin.get("source") != SOURCE:
            return None
        return cls(
            host=origin.get("host"),
            inbox=str(origin["inbox"]),
            processing=str(origin["processing"]),
            dev=origin.get("dev"),
            ino=int(origin["ino"]),
        )


def processing_path(sub: Submission) -> str | None:
    """Where a dropped (or posted) file of ``sub`` waits: its folder origin's ``processing``."""
    origin = FolderOrigin.of(sub)
    return None if origin is None else origin.processing


@dataclass(frozen=True, slots=True)
class Host:
    """This host, as the drop folder needs it: its own id and the deployment's (the host an
    origin without ``host`` was seen by)."""

    id: str
    deployment: str

    def saw(self, origin: FolderOrigin) -> bool:
        return (origin.host or self.deployment) == self.id

    def sees(self, sub: Submission) -> bool:
        """Whether ``sub`` came from a drop folder on this host (its paths are this host's)."""
        origin = FolderOrigin.of(sub)
        return origin is not None and self.saw(origin)


# One host that is also the deployment: a single daemon, and the loops' tests.
LOCAL = Host("local", "local")
