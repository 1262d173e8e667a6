"""Queue kinds: which job queue carries enrichment work (``TIPLINE_QUEUE``, ``--queue``).

The setting's validation, the CLI's ``--queue`` choices, the health checks and
``tipline.pipeline.queue.open_queue`` read this registry; nothing else lists the kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class QueueKind(StrEnum):
    #: Procrastinate on PostgreSQL, the in-process queue otherwise.
    AUTO = "auto"
    #: Threads in the serving process over the store's own pending list (the embedded default).
    INPROCESS = "inprocess"
    #: Procrastinate's job tables in PostgreSQL, shared by any number of worker processes.
    PROCRASTINATE = "procrastinate"


@dataclass(frozen=True)
class QueueInfo:
    description: str
    #: The database dialect the queue needs, if any.
    needs_dialect: str | None


QUEUE_KINDS: dict[QueueKind, QueueInfo] = {
    QueueKind.AUTO: QueueInfo("procrastinate on PostgreSQL, inprocess otherwise", None),
    QueueKind.INPROCESS: QueueInfo("threads in the serving process (embedded default)", None),
    QueueKind.PROCRASTINATE: QueueInfo("Procrastinate job tables, many worker processes", "postgresql"),
}
QUEUE_NAMES: tuple[str, ...] = tuple(k.value for k in QueueKind)


def resolve(kind: str | None, dialect: str) -> QueueKind:
    """The concrete queue for ``kind`` on a database of ``dialect``; ValueError says why not."""
    name = (kind or QueueKind.AUTO).lower()
    if name not in QUEUE_NAMES:
        raise ValueError(f"TIPLINE_QUEUE={name!r} is not available: use {', '.join(QUEUE_NAMES)} "
                         "(see docs/pipeline.md for why the embedded queue is in-process rather than huey)")
    k = QueueKind(name)
    if k is QueueKind.AUTO:
        return QueueKind.PROCRASTINATE if dialect == "postgresql" else QueueKind.INPROCESS
    need = QUEUE_KINDS[k].needs_dialect
    if need is not None and need != dialect:
        raise ValueError(f"TIPLINE_QUEUE={name} needs a PostgreSQL TIPLINE_DATABASE_URL")
    return k
