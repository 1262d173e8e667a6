"""Stage ``jurisdiction``: whose case a report is.

It picks one of the report's ``Location`` rows by the precedence in ``data/routing.toml`` and
resolves country and, in the US, state — or leaves them unknown (NULL). See docs/routing.md
for the precedence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tipline.console import queue_model
from tipline.kinds.locations import LOCATION_CLASSES
from tipline.pipeline.core import Outcome, StageContext, forget_objects, insert_rows, stage
from tipline.pipeline.directory import load_routing
from tipline.pipeline.geo import us_state_code

#: The report source whose victim and reporter addresses are location sources of their own:
#: a member of the public telling where the child, the person responsible and they are.
from tipline.pipeline.stages.location import (
    iso_second,
)
from tipline.store.tables import Jurisdiction, Location


@dataclass(frozen=True)
class Resolved:
    country: str | None
    us_state: str | None
    source: str | None
    confidence: float
    reason: str


def _describe(row: Any) -> str:
    where = ", ".join(x for x in (row.city, row.region, row.country) if x)
    if row.source == "ip":
        return f"IP {row.ip or '?'} ({row.event or '?'} at {iso_second(row.event_at)}) in {where}"
    if row.source == "esp_estimate":
        return f"{'verified' if row.verified else 'unverified'} platform estimate {where}"
    public = LOCATION_CLASSES.get(row.source)
    if public is not None and public.whose is not None:
        return f"{public.whose} location given on the public form ({where})"
    return f"address given in the report ({where})"


def resolve(rows: list[Any], precedence: list[str]) -> Resolved:
    """Pick country and US state from Location rows by precedence (a pure function).

    Within a class, the most recent event wins (IP capture time, estimate timestamp), then
    the higher confidence, then the lower row id. The state comes from the chosen source when
    it has one, else from the next source in precedence that agrees the country is the US.
    """
    rank = {c: i for i, c in enumerate(precedence)}
    usable = [r for r in rows if r.country and r.location_class in rank]

    def key(r: Any) -> tuple[int, int, float, float, int]:
        # Most recent first; a source that gives no time comes after every timed one.
        timed = r.event_at is not None
        return (rank[r.location_class], 0 if timed else 1, -r.event_at.timestamp() if timed else 0.0,
                -float(r.confidence), int(r.id))

    usable.sort(key=key)
    if not usable:
        ignored = [r for r in rows if r.country]
        why = "no usable location source"
        if ignored:
            why += "; ignored: " + "; ".join(f"{_describe(r)} [{r.location_class}]"
                                             for r in ignored[:5])
        elif rows:
            why += f"; {len(rows)} source(s) could not be placed (private, CGNAT, documentation or unknown IPs)"
        return Resolved(None, None, None, 0.0, why)
    best = usable[0]
    cls = best.location_class
    parts = [f"country {best.country} from {_describe(best)} [{cls}]"]
    state: str | None = None
    conf = float(best.confidence)
    if best.country == "US":
        if best.region and us_state_code(best.region):
            state = us_state_code(best.region)
            parts.append(f"state {state} from the same source")
        else:
            for r in usable[1:]:
                if r.country == "US" and r.region and us_state_code(r.region):
                    state = us_state_code(r.region)
                    conf = min(conf, float(r.confidence))
                    parts.append(f"state {state} from {_describe(r)} [{r.location_class}]")
                    break
            else:
                parts.append("state unknown")
    disagree = sorted({r.country for r in usable if r.country != best.country})
    if disagree:
        parts.append(f"other sources say {', '.join(disagree)}")
    return Resolved(best.country, state, cls, conf, "; ".join(parts))


def jurisdictions_group(ctx: StageContext, session: Session, report_ids: list[int]) -> dict[int, Outcome]:
    """The jurisdiction stage over a group: three statements per 500 reports."""
    precedence = list(ctx.service("routing_rules", load_routing).precedence)
    ids = list(report_ids)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        by_report: dict[int, list[Any]] = {rid: [] for rid in chunk}
        # Plain rows, not ORM objects: an identity map could hand back a row of an earlier run
        # under a reused id (SQLite reuses rowids).
        for loc in session.execute(select(*Location.__table__.c).where(Location.report_id.in_(chunk))
                                   .order_by(Location.id)):
            by_report[int(loc.report_id)].append(loc)
        session.execute(delete(Jurisdiction).where(Jurisdiction.report_id.in_(chunk))
                        .execution_options(synchronize_session=False))
        for rid in chunk:
            res = resolve(by_report[rid], precedence)
            rows.append({"report_id": rid, "country": res.country, "us_state": res.us_state, "source": res.source,
                         "confidence": res.confidence, "reason": res.reason, "resolved_at": now})
    insert_rows(session, Jurisdiction, rows)
    forget_objects(session, Jurisdiction)
    # The analyst queue's read model follows its inputs in this transaction (tipline.console.queue_model).
    queue_model.refresh(session, ids)
    return dict.fromkeys(ids, Outcome.DONE)


@stage("jurisdiction", version="2", after=("location",), group=jurisdictions_group)  # 2: ip_upload in the precedence
def jurisdiction_stage(ctx: StageContext, session: Session, report_id: int) -> None:
    """Resolve country and US state from the report's Location rows by the stated precedence, or unknown."""
    jurisdictions_group(ctx, session, [report_id])
