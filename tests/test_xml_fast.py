"""The fast XML writer (bulk loads) against the checked one: the same bytes, and valid ones.

``report_to_xml``/``file_details_to_xml`` build an lxml tree and read it back through the
CyberTipline reader; ``*_fast`` build the string directly and skip the read-back. The checked
writer stays the reference: every case here renders both ways and compares bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tipline.cybertip.codes import CybertipError
from tipline.cybertip.xml import (
    file_details_to_xml,
    file_details_to_xml_fast,
    parse_file_details,
    parse_report,
    report_to_xml,
    report_to_xml_fast,
)
from tipline.model.report import FileDetails, OriginalFileHash
from tipline.sim.generate import SimReport, YearGenerator
from tipline.web.ispws import XSD_PATH


@pytest.fixture(scope="module")
def simulated() -> list[SimReport]:
    # 2023 (the target year) and 2024 (batched viral reports), a few thousand reports in all.
    return [r for year, scale in ((2023, 0.0001), (2024, 0.00002))
            for r in YearGenerator(year, scale, 7, files="hashes") if r.report is not None]


@pytest.fixture(scope="module")
def xsd() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def test_simulated_reports_render_the_same_bytes_both_ways(simulated: list[SimReport], xsd: etree.XMLSchema) -> None:
    assert len(simulated) > 3000
    differ, invalid = [], []
    for r in simulated:
        assert r.report is not None
        fast = report_to_xml_fast(r.report)
        if fast != report_to_xml(r.report):
            differ.append(r.seq)
        if not xsd.validate(etree.fromstring(fast)):
            invalid.append(r.seq)
    assert differ == [] and invalid == []
    # The fast bytes are what the reader accepts, and they read back as the same report.
    for r in simulated[::25]:
        assert r.report is not None
        assert parse_report(report_to_xml_fast(r.report)).value == r.report


def test_simulated_file_details_render_the_same_bytes_both_ways(simulated: list[SimReport],
                                                                xsd: etree.XMLSchema) -> None:
    details = [FileDetails(reportId=r.seq + 1, fileId=f"b{r.seq:07d}{f.seq:024d}", **f.details)
               for r in simulated for f in r.files]
    assert len(details) > 5000
    assert any(fd.fileAnnotations is not None for fd in details)
    assert any(fd.industryClassification is not None for fd in details)
    differ = [fd.fileId for fd in details if file_details_to_xml_fast(fd) != file_details_to_xml(fd)]
    assert differ == []
    invalid = [fd.fileId for fd in details if not xsd.validate(etree.fromstring(file_details_to_xml_fast(fd)))]
    assert invalid == []
    for fd in details[::50]:
        assert parse_file_details(file_details_to_xml_fast(fd)).value == fd


# Text that XML can carry, weighted towards what must be escaped (libxml2 escapes & < > and CR
# in text; in attribute values also ", TAB and LF) and towards characters outside ASCII.
_CARRIED = st.text(st.one_of(
    st.sampled_from(list("&<>\"'\t\n\r ;#]x")),
    st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(
        lambda c: c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"),
), max_size=30)


def _details(name: str, attr: str, value: str, info: str) -> FileDetails:
    return FileDetails(reportId=12, fileId="c" * 32, fileName=name or None, additionalInfo=[info],
                       originalFileHash=[OriginalFileHash(value=value, hashType=attr)])


@settings(max_examples=300, deadline=None)
@given(_CARRIED, _CARRIED, _CARRIED, _CARRIED)
def test_escaping_matches_the_checked_writer(name: str, attr: str, value: str, info: str) -> None:
    fd = _details(name, attr, value, info)
    fast = file_details_to_xml_fast(fd)
    assert fast == file_details_to_xml(fd)


@pytest.mark.parametrize("bad", ["\x00", "\x01", "a\x1fb", "\ufffe", "\ud800"])
def test_a_character_xml_cannot_carry_is_the_same_4100(bad: str) -> None:
    for fd in (_details(bad, "MD5", "x", "y"), _details("n", f"MD{bad}5", "x", "y"), _details("n", "MD5", "x", bad)):
        with pytest.raises(CybertipError) as checked:
            file_details_to_xml(fd)
        with pytest.raises(CybertipError) as fast:
            file_details_to_xml_fast(fd)
        assert (fast.value.code, fast.value.description) == (checked.value.code, checked.value.description)
        assert "cannot be carried in XML" in fast.value.description
