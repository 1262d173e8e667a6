"""What a run of the links stage changed in one report's links, kept for the bundles stage.

The bundles stage brings a report's incident up to date from its new links alone when it
knows exactly what changed since the incidents were last made to agree with the links
(``bundling.incremental``); otherwise it re-plans the report's whole group. The links stage
records that change here and the bundles stage takes it, both as stored rows.

A change set holds only while nothing else has touched links or incidents since it was
recorded: every run of either stage drops the change sets of other reports, and a second
links run over an unread set marks it as removing links (so the re-plan runs). In the
grouped runner the two stages of a report run one after the other under the cross-report
lock, so the set is read as soon as it is written.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from tipline.store.tables import ReportLinkChange, ReportLinkChangeItem

#: A link as the links stage sees it from one report: (other report, reason, weight, detail).
LinkTuple = tuple[int, str, float, str | None]


@dataclass(frozen=True)
class LinkChange:
    """How one run of the links stage changed a report's links: rows removed or altered, rows added."""

    removed: bool
    added: frozenset[LinkTuple]
    #: Links (other report, reason) that kept their weight but changed their detail (wording).
    redetailed: frozenset[tuple[int, str]] = frozenset()

    @property
    def reworded_reports(self) -> frozenset[int]:
        return frozenset(o for o, _ in self.redetailed)


def diff_links(before: Set[LinkTuple], after: Set[LinkTuple]) -> LinkChange:
    """The change from a report's links ``before`` a run of the links stage to those ``after`` it."""
    # A pair written earlier from the other report's side may carry other wording: that changes
    # no membership, only which reason text is lowest, so it is not counted as a removal.
    old_keys = {(o, r, w): d for o, r, w, d in before}
    new_keys = {(o, r, w): d for o, r, w, d in after}
    redetailed = frozenset((o, r) for (o, r, w), d in new_keys.items()
                           if (o, r, w) in old_keys and old_keys[(o, r, w)] != d)
    return LinkChange(
        removed=bool(set(old_keys) - set(new_keys)),
        added=frozenset(t for t in after - before if (t[0], t[1], t[2]) not in old_keys),
        redetailed=redetailed)


def record_link_change(session: Session, report_id: int, change: LinkChange) -> None:
    """Store what the links stage changed for ``report_id`` (replacing what no one read)."""
    unread = session.execute(select(ReportLinkChange.report_id).where(
        ReportLinkChange.report_id == report_id)).first() is not None
    forget_link_changes(session)
    # Two runs before the bundles stage read the first: their sum is not known, so re-plan.
    session.execute(insert(ReportLinkChange), [{"report_id": report_id, "removed": change.removed or unread}])
    items = [{"report_id": report_id, "other_report_id": o, "reason": r, "weight": w, "detail": d, "reworded": False}
             for o, r, w, d in sorted(change.added, key=repr)]
    items += [{"report_id": report_id, "other_report_id": o, "reason": r, "weight": None, "detail": None,
               "reworded": True} for o, r in sorted(change.redetailed)]
    if items:
        session.execute(insert(ReportLinkChangeItem), items)


def take_link_change(session: Session, report_id: int) -> LinkChange | None:
    """What the links stage recorded for ``report_id`` since the last bundling, or None when
    that is not known; every recorded change is forgotten (the caller makes incidents agree)."""
    row = session.execute(select(ReportLinkChange.removed).where(ReportLinkChange.report_id == report_id)).first()
    change = None
    if row is not None:
        added: set[LinkTuple] = set()
        redetailed: set[tuple[int, str]] = set()
        for o, r, w, d, reworded in session.execute(
                select(ReportLinkChangeItem.other_report_id, ReportLinkChangeItem.reason, ReportLinkChangeItem.weight,
                       ReportLinkChangeItem.detail, ReportLinkChangeItem.reworded)
                .where(ReportLinkChangeItem.report_id == report_id)):
            if reworded:
                redetailed.add((int(o), str(r)))
            else:
                added.add((int(o), str(r), float(w or 0.0), d))
        change = LinkChange(bool(row.removed), frozenset(added), frozenset(redetailed))
    forget_link_changes(session)
    return change


def forget_link_changes(session: Session) -> None:
    """Drop every recorded change: links or incidents are about to change under them."""
    # Items go with their set (ON DELETE CASCADE on both backends: SQLite's foreign keys are on).
    session.execute(delete(ReportLinkChange))


# --- a group's link changes, handed from the links stage to the bundles stage in memory ------
#
# The grouped links stage knows every pair touching its group before and after its run (it read
# them, and it wrote the difference); the bundles stage that follows in the same transaction can
# bring the incidents up to date from that difference alone (``bundling.delta``), without reading
# the components again. The hand-over is valid only in the transaction that made it (the
# cross-report lock is held from links to commit, so nothing else changed links meanwhile) and
# only once: any other run of either stage drops it.

_DELTA_KEY = "tipline.links-delta"
#: A link by primary key, as the grouped links stage holds it: (report_a, report_b, reason).
PairKey = tuple[int, int, str]


@dataclass(frozen=True)
class GroupLinkDelta:
    """Every stored link touching ``group``, before and after one grouped links run:
    {(report_a, report_b, reason): (weight, detail)}."""

    group: frozenset[int]
    before: dict[PairKey, tuple[float, str | None]]
    after: dict[PairKey, tuple[float, str | None]]


def hand_over_links(session: Session, delta: GroupLinkDelta) -> None:
    """Keep ``delta`` for the bundles stage of this transaction (replacing any earlier one)."""
    session.info[_DELTA_KEY] = (session.get_transaction(), delta)


def take_links_delta(session: Session) -> GroupLinkDelta | None:
    """The delta handed over in this transaction, if any; it is forgotten either way."""
    held = session.info.pop(_DELTA_KEY, None)
    if held is None:
        return None
    tx, delta = held
    # The transaction object itself (not its id(): a new one can reuse a finished one's id).
    return delta if tx is not None and tx is session.get_transaction() else None


def drop_links_delta(session: Session) -> None:
    """Forget a handed-over delta: links or incidents changed some other way."""
    session.info.pop(_DELTA_KEY, None)
