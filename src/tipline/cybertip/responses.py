"""ISPWS response documents, byte-exact to what NCMEC's server sends.

One line, an XML declaration with ``standalone="yes"``, no namespace, and a non-empty
``responseDescription`` (clients fail on an empty one).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from tipline.cybertip.codes import DESCRIPTIONS, ResponseCode

DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
CONTENT_TYPE = "application/xml; charset=UTF-8"


def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def report_response(
    code: ResponseCode,
    description: str | None = None,
    *,
    report_id: int | None = None,
    file_id: str | None = None,
    md5: str | None = None,
) -> bytes:
    parts = [DECL, "<reportResponse>", _el("responseCode", int(code))]
    parts.append(_el("responseDescription", description or DESCRIPTIONS[code]))
    if report_id is not None:
        parts.append(_el("reportId", report_id))
    if file_id is not None:
        parts.append(_el("fileId", file_id))
    if md5 is not None:
        parts.append(_el("hash", md5))
    parts.append("</reportResponse>")
    return "".join(parts).encode("utf-8")


def report_done_response(code: ResponseCode, report_id: int, file_ids: list[str]) -> bytes:
    """``reportDoneResponse``: always carries reportId and files, even on errors."""
    files = "".join(_el("fileId", f) for f in file_ids)
    files_el = f"<files>{files}</files>" if file_ids else "<files/>"
    body = (
        f"{DECL}<reportDoneResponse>{_el('responseCode', int(code))}"
        f"{_el('reportId', report_id)}{files_el}</reportDoneResponse>"
    )
    return body.encode("utf-8")
