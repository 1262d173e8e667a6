"""A group's documents are decoded once and shared by its stages (``core.report_documents``),
and never served stale: a document changed between the group's two transactions (an
addendum) is read again, and the stages' output follows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from helpers import person, report_doc, store_report
from tipline.pipeline.core import _GROUP_DOCS, GroupDocuments, StageContext, report_documents, run_reports
from tipline.runtime import Runtime
from tipline.store.db import transaction
from tipline.store.tables import Identifier, ReportIdentifier
from tipline.store.tables import Report as ReportRow


def test_one_decode_per_group_shared_by_stages_and_transactions(runtime: Runtime) -> None:
    rid = store_report(runtime, report_doc([person("alice")]), files=["x"], file_details=[{"fileName": "x.jpg"}])
    docs = GroupDocuments()
    with transaction(runtime.sessions) as s:
        s.info[_GROUP_DOCS] = docs
        first = report_documents(s, [rid])[rid]
        again = report_documents(s, [rid, rid])[rid]
        assert again is first  # one decode for every stage of the transaction
        assert first.model() is first.model()
        assert [f.details for f in first.files] == [{"fileName": "x.jpg"}]
    assert docs.decoded == 1
    with transaction(runtime.sessions) as s:  # the group's second transaction: unchanged, kept
        s.info[_GROUP_DOCS] = docs
        assert report_documents(s, [rid])[rid] is first
    assert docs.decoded == 1


def test_a_document_changed_between_transactions_is_read_again(runtime: Runtime) -> None:
    rid = store_report(runtime, report_doc([person("alice")]))
    docs = GroupDocuments()
    with transaction(runtime.sessions) as s:
        s.info[_GROUP_DOCS] = docs
        old = report_documents(s, [rid])[rid]
    # What an addendum writes (intake.add_document): a new document and last_change_at.
    with transaction(runtime.sessions) as s:
        doc = dict(s.execute(select(ReportRow.document).where(ReportRow.id == rid)).scalar_one())
        doc["personOrUserReported"] = report_doc([person("bob")])["personOrUserReported"]
        s.execute(update(ReportRow).where(ReportRow.id == rid).values(
            document=doc, last_change_at=datetime.now(UTC) + timedelta(seconds=1)))
    with transaction(runtime.sessions) as s:
        s.info[_GROUP_DOCS] = docs
        new = report_documents(s, [rid])[rid]
    assert new is not old and docs.decoded == 2
    assert new.document == doc


def test_outside_a_group_each_transaction_reads_afresh(runtime: Runtime) -> None:
    rid = store_report(runtime, report_doc([person("alice")]))
    with transaction(runtime.sessions) as s:
        a = report_documents(s, [rid])[rid]
        assert report_documents(s, [rid])[rid] is a  # a group of one: the transaction's cache
    with transaction(runtime.sessions) as s:
        assert report_documents(s, [rid])[rid] is not a


def test_stages_of_a_group_see_the_stored_document(runtime: Runtime) -> None:
    """Run through the runner, the identifiers read from the shared documents are the report's."""
    rid = store_report(runtime, report_doc([person("alice")]))
    run_reports(StageContext(runtime), {rid: ["identifiers"]})
    with runtime.sessions() as s:
        values = set(s.execute(select(Identifier.value).join(
            ReportIdentifier, ReportIdentifier.identifier_id == Identifier.id)
            .where(ReportIdentifier.report_id == rid)).scalars())
    assert any("alice" in v for v in values), values
