"""The CyberTipline wire format: hardened XML parsing, validation and serialisation.

Reading walks the product's own format definition (``tipline.cybertip.schema``) over an
lxml tree: the same walk validates (4100 with the element's path on the first problem) and
builds the typed ``tipline.model.report`` objects. Writing walks the same definition over a
model, so what is emitted is what is accepted.

Malformed input (over the size cap, not well-formed, any DOCTYPE/DTD or entity, wrong root,
bad encoding, too deep) is 4110; anything the format does not allow is 4100.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from lxml import etree
from pydantic import BaseModel, ValidationError

from tipline.cybertip import schema as s
from tipline.cybertip.codes import CybertipError, ResponseCode
from tipline.model.report import FileDetails, Report

T = TypeVar("T")

MAX_XML_BYTES: int = 10 * 1024 * 1024  # cap applied before parsing
MAX_DEPTH = 64  # the format nests at most 8 deep; anything far deeper is hostile
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew allowed on incidentDateTime

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_ALLOWED = {f"{{{_XSI}}}schemaLocation", f"{{{_XSI}}}noNamespaceSchemaLocation"}
_WS_ONLY = re.compile(r"[ \t\n\r]*")
# Characters XML 1.0 cannot carry (checked when writing models that came from JSON).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TOO_DEEP_EXPR = "boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")"


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed document and the normalisations applied to it (empty when none)."""

    value: T
    normalisations: list[str]


class _Invalid(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


# lxml parsers (and compiled XPaths) must not be shared between threads; the web server
# runs sync handlers in a thread pool, so each thread gets its own.
_local = threading.local()


def _too_deep(element: etree._Element) -> bool:
    check: etree.XPath | None = getattr(_local, "too_deep", None)
    if check is None:
        check = _local.too_deep = etree.XPath(_TOO_DEEP_EXPR)
    return bool(check(element))


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,  # comments and PIs carry no data in this format
            remove_pis=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def _malformed(detail: str) -> CybertipError:
    return CybertipError(ResponseCode.MALFORMED_XML, detail)


def _load(body: bytes, root: s.Element) -> etree._Element:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be bytes")
    if len(body) > MAX_XML_BYTES:
        raise _malformed(f"body is {len(body)} bytes; the limit is {MAX_XML_BYTES}")
    try:
        element = etree.fromstring(bytes(body), _parser())
    except etree.XMLSyntaxError as exc:
        raise _malformed(syntax_error_detail(exc)) from None
    except (etree.LxmlError, ValueError) as exc:
        raise _malformed(f"unreadable XML: {exc}") from None
    if element is None:
        raise _malformed("empty document")
    info: Any = element.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise _malformed("DOCTYPE declarations (DTDs, entities) are not accepted")
    if element.tag != root.name:
        raise _malformed(f"root element is <{_show(element.tag)}>; expected <{root.name}>")
    if _too_deep(element):
        raise _malformed(f"elements nested deeper than {MAX_DEPTH} levels")
    return element


# lxml appends the position to libxml2's message; it is stated once, up front, instead.
_LXML_POSITION = re.compile(r",? line \d+, column \d+$")
# libxml2 names the line an unclosed element opened on ("tag mismatch: a line 1 and b").
_OPENED_ON = re.compile(r"(tag mismatch: |end of data in tag )(\S+) line (\d+)( and (\S+))?")


def syntax_error_detail(exc: etree.XMLSyntaxError) -> str:
    """``not well-formed XML at line L, column C: <what>``, the position named once."""
    msg = _LXML_POSITION.sub("", str(exc.msg or "")).strip() or "syntax error"
    line, column = exc.position if exc.position else (exc.lineno, 0)

    def opened(m: re.Match[str]) -> str:
        where = "" if int(m.group(3)) == line else f" (opened on line {m.group(3)})"
        closing = f" and </{m.group(5)}>" if m.group(5) else ""
        return f"{m.group(1)}<{m.group(2)}>{where}{closing}"

    msg = _OPENED_ON.sub(opened, msg)
    return f"not well-formed XML at line {line}, column {column}: {msg}"


def _show(tag: object) -> str:
    if not isinstance(tag, str):
        return "?"
    # {namespace}local -> local (in namespace) for messages
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return f"{local} in namespace {ns}"
    return tag


# --- reading ----------------------------------------------------------------------------


class _Reader:
    """One document's walk: validates and builds plain dicts for the models."""

    __slots__ = ("notes",)

    def __init__(self) -> None:
        self.notes: list[str] = []

    def simple(self, st: s.SimpleType, raw: str, path: str) -> object:
        found: list[tuple[str, str]] = []
        try:
            value = s.parse_simple(st, raw, found)
        except s.LexicalError as exc:
            raise _Invalid(path, str(exc)) from None
        for key, message in found:
            self.notes.append(f"{path}: {message} [{key}]")
        return value

    def attributes(self, el: etree._Element, t: s.ComplexType | None, path: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for qname, raw_value in el.attrib.items():
            name, raw = str(qname), str(raw_value)
            if name.startswith("{"):
                if name in _XSI_ALLOWED:
                    continue  # schema hints: the XSD allows them on any element
                raise _Invalid(path, f"attribute {_show(name)} is not allowed")
            attr = t.attribute.get(name) if t is not None else None
            if attr is None:
                if t is not None and name in s.MISPLACED_ATTRIBUTES.get(t.name, {}):
                    continue  # handled by the complex-type walk
                allowed = ", ".join(t.attribute) if t is not None and t.attribute else "none"
                raise _Invalid(
                    path, f"unexpected attribute '{name}' on <{el.tag}>; allowed: {allowed}"
                )
            values[name] = self.simple(attr.type, raw, f"{path}/@{name}")
        if t is not None:
            for attr in t.required_attributes:
                if attr.name not in values:
                    raise _Invalid(path, f"missing required attribute '{attr.name}'")
        return values

    def text(self, el: etree._Element, path: str) -> str:
        if len(el):
            raise _Invalid(
                path, f"<{el.tag}> holds a value, not elements (found <{_show(el[0].tag)}>)"
            )
        return el.text or ""

    def element(self, el: etree._Element, decl: s.Element, path: str) -> Any:
        t = decl.type
        if isinstance(t, s.SimpleType):
            self.attributes(el, None, path)
            return self.simple(t, self.text(el, path), path)
        values = self.attributes(el, t, path)
        content = t.content
        if content == "simple":
            assert t.simple is not None
            values["value"] = self.simple(t.simple, self.text(el, path), path)
        elif content == "empty":
            if len(el) or el.text:
                raise _Invalid(path, f"<{el.tag}> must be empty (it only carries attributes)")
        elif content == "all":
            self.all_group(el, t, path, values)
        else:
            self.sequence(el, t, path, values)
        return values

    def _check_text(self, el: etree._Element, path: str) -> None:
        text = el.text
        if text and not _WS_ONLY.fullmatch(text):
            raise _Invalid(path, f"text {text.strip()[:40]!r} is not allowed in <{el.tag}>")
        for child in el:
            tail = child.tail
            if tail and not _WS_ONLY.fullmatch(tail):
                raise _Invalid(path, f"text {tail.strip()[:40]!r} is not allowed in <{el.tag}>")

    def all_group(
        self, el: etree._Element, t: s.ComplexType, path: str, values: dict[str, Any]
    ) -> None:
        self._check_text(el, path)
        for child in el:
            name = child.tag
            decl = t.element.get(name) if isinstance(name, str) else None
            if decl is None:
                raise _Invalid(
                    path,
                    f"unexpected element {_show(name)} in <{el.tag}>; "
                    f"allowed: {', '.join(t.element)}",
                )
            if name in values:
                raise _Invalid(f"{path}/{name}", f"{name} appears more than once")
            values[name] = self.element(child, decl, f"{path}/{name}")
        for name, decl in t.element.items():
            if decl.min and name not in values:
                raise _Invalid(path, f"missing required element {name}")

    def sequence(
        self, el: etree._Element, t: s.ComplexType, path: str, values: dict[str, Any]
    ) -> None:
        self._check_text(el, path)
        particles = t.particles
        pos, count = 0, 0  # current particle and how many elements it has taken
        chosen: str | None = None  # the option taken when the current particle is a Choice
        seen: dict[str, int] = {}
        for child in el:
            name = child.tag
            j = t.position.get(name, -1) if isinstance(name, str) else -1
            if j < 0:
                raise _Invalid(
                    path,
                    f"unexpected element {_show(name)} here; expected "
                    f"{_expected(particles, pos, count, chosen)}",
                )
            decl = t.element[name]
            if j == pos:
                p = particles[pos]
                if isinstance(p, s.Choice) and chosen is not None and chosen != name:
                    raise _Invalid(
                        path,
                        f"{name} cannot appear together with {chosen} "
                        f"(only one of {', '.join(p.names)})",
                    )
                limit = decl.max
                if limit is not None and count >= limit:
                    raise _Invalid(
                        f"{path}/{name}",
                        f"{name} may appear at most {limit} time{'s' if limit > 1 else ''} here",
                    )
            elif j > pos:
                missing = _first_missing(particles, pos, count, j)
                if missing is not None:
                    if any(sibling.tag == missing for sibling in child.itersiblings()):
                        raise _Invalid(
                            f"{path}/{missing}",
                            f"element {missing} is out of order: it must come before {name}",
                        )
                    raise _Invalid(
                        path, f"missing required element {missing} (expected before {name})"
                    )
                pos, count = j, 0
            else:
                after = _name_of(particles[pos], chosen)
                raise _Invalid(
                    f"{path}/{name}",
                    f"element {name} is out of order: it must come before {after}; expected "
                    f"{_expected(particles, pos, count, chosen)}",
                )
            chosen = name if isinstance(particles[pos], s.Choice) else None
            count += 1
            if decl.repeated:
                n = seen.get(name, 0) + 1
                seen[name] = n
                value = self.element(child, decl, f"{path}/{name}[{n}]")
                values.setdefault(name, []).append(value)
            else:
                values[name] = self.element(child, decl, f"{path}/{name}")
        missing = _first_missing(particles, pos, count, len(particles))
        if missing is not None:
            raise _Invalid(path, f"missing required element {missing}")
        misplaced = s.MISPLACED_ATTRIBUTES.get(t.name)
        if misplaced:
            self.misplaced(el, t, path, values, misplaced)

    def misplaced(
        self,
        el: etree._Element,
        t: s.ComplexType,
        path: str,
        values: dict[str, Any],
        rules: dict[str, tuple[str, str]],
    ) -> None:
        for attr_name, (child_name, key) in rules.items():
            raw = el.get(attr_name)
            if raw is None:
                continue
            child_decl = t.element[child_name]
            assert isinstance(child_decl.type, s.ComplexType)
            attr = child_decl.type.attribute[attr_name]
            apath = f"{path}/@{attr_name}"
            value = self.simple(attr.type, raw, apath)
            child = values.get(child_name)
            if child is None:
                raise _Invalid(
                    apath,
                    f"{attr_name} belongs on {child_name}, which is missing; "
                    f"write <{child_name} {attr_name}=\"{raw}\">true</{child_name}>",
                )
            if attr_name in child and child[attr_name] != value:
                raise _Invalid(
                    apath,
                    f"{attr_name}='{raw}' here contradicts {child_name}/@{attr_name}",
                )
            child[attr_name] = value
            self.notes.append(
                f"{apath}: moved to {path}/{child_name}/@{attr_name} ('{raw}') [{key}]"
            )


def _name_of(p: s.Particle, chosen: str | None) -> str:
    if isinstance(p, s.Choice):
        return chosen or " / ".join(p.names)
    return p.name


def _satisfied(p: s.Particle, count: int) -> bool:
    if isinstance(p, s.Choice):
        return count > 0 or p.emptiable
    return count >= p.min


def _first_missing(particles: tuple[s.Particle, ...], pos: int, count: int, end: int) -> str | None:
    for i in range(pos, min(end, len(particles))):
        p = particles[i]
        if not _satisfied(p, count if i == pos else 0):
            return p.name if isinstance(p, s.Element) else f"({' or '.join(p.names)})"
    return None


def _expected(
    particles: tuple[s.Particle, ...], pos: int, count: int, chosen: str | None
) -> str:
    names: list[str] = []
    for i in range(pos, len(particles)):
        p = particles[i]
        c = count if i == pos else 0
        if isinstance(p, s.Choice):
            if c == 0:
                names.extend(p.names)
            elif chosen is not None and p.options[p.names.index(chosen)].max != 1:
                names.append(chosen)
        elif p.max is None or c < p.max:
            names.append(p.name)
        if not _satisfied(p, c):
            break
    else:
        names.append("the end of the element")
    return " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)


def _read(body: bytes, root: s.Element, model: type[BaseModel]) -> tuple[Any, list[str]]:
    element = _load(body, root)
    reader = _Reader()
    try:
        data = reader.element(element, root, "/" + root.name)
    except _Invalid as exc:
        raise CybertipError(ResponseCode.VALIDATION_FAILED, str(exc)) from None
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        detail = _pydantic_detail(root.name, exc)
        raise CybertipError(ResponseCode.VALIDATION_FAILED, detail) from None
    return value, reader.notes


def _pydantic_detail(root: str, exc: ValidationError) -> str:
    # Only reachable when the model is stricter than the wire definition (e.g. a JSON report).
    first = exc.errors()[0]
    path = "/" + "/".join([root, *(str(p) for p in first["loc"])])
    return f"{path}: {first['msg']}"


def parse_report(body: bytes) -> Parsed[Report]:
    """Parse and validate a ``<report>`` document (the body of ``/submit``).

    Raises ``CybertipError`` with MALFORMED_XML (4110) or VALIDATION_FAILED (4100); the
    4100 detail names the offending element by path. Also applies the submit-time business
    rules (see ``check_submit_rules``).
    """
    value, notes = _read(body, s.REPORT, Report)
    assert isinstance(value, Report)
    check_submit_rules(value)
    return Parsed(value, notes)


def parse_file_details(body: bytes) -> Parsed[FileDetails]:
    """Parse and validate a ``<fileDetails>`` document (the body of ``/fileinfo``)."""
    value, notes = _read(body, s.FILE_DETAILS, FileDetails)
    assert isinstance(value, FileDetails)
    return Parsed(value, notes)


def check_submit_rules(report: Report, now: datetime | None = None) -> None:
    """Business rules checked at ``/submit`` beyond the format (raise 4100).

    An ``incidentDateTime`` more than 5 minutes in the future is rejected, as NCMEC does.
    A value without an offset is only "in the future" if it is so in every timezone
    (UTC+14), so a client's local time never trips it. Call this for JSON reports too.
    """
    now = now or datetime.now(UTC)
    when = report.incidentSummary.incidentDateTime
    limit = now.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=14) if when.tzinfo is None else now
    if when > limit + FUTURE_TOLERANCE:
        raise CybertipError(
            ResponseCode.VALIDATION_FAILED,
            f"/report/incidentSummary/incidentDateTime: {when.isoformat()} is in the future; "
            "incident dates may not be later than now",
        )


def finish_rule_violations(fd: FileDetails) -> list[str]:
    """Business rules checked at ``/finish`` for one file's details; empty when fine.

    Only a file whose fileRelevance is "Reported" (or absent, which means Reported) may
    carry industryClassification or potentialMeme (the legacy element, whatever its value,
    or the fileAnnotations flag).
    """
    relevance = fd.fileRelevance or "Reported"
    if relevance == "Reported":
        return []
    where = f"file {fd.fileId}: fileRelevance is '{relevance}'"
    problems: list[str] = []
    if fd.industryClassification is not None:
        problems.append(f"{where}; only Reported files may carry industryClassification")
    if fd.potentialMeme is not None or (fd.fileAnnotations and fd.fileAnnotations.potentialMeme):
        problems.append(f"{where}; only Reported files may carry potentialMeme")
    return problems


# --- writing ----------------------------------------------------------------------------


def _text(value: str, path: str) -> str:
    bad = _NOT_XML.search(value)
    if bad is not None:
        raise CybertipError(
            ResponseCode.VALIDATION_FAILED,
            f"{path}: character U+{ord(bad.group()):04X} cannot be carried in XML",
        )
    return value


def _write(parent: etree._Element | None, decl: s.Element, value: Any, path: str) -> etree._Element:
    el = etree.Element(decl.name) if parent is None else etree.SubElement(parent, decl.name)
    t = decl.type
    if isinstance(t, s.SimpleType):
        el.text = _text(s.format_simple(t, value), path)  # a set flag is written "true"
        return el
    for attr in t.attributes:
        v = getattr(value, attr.name)
        if v is not None:
            el.set(attr.name, _text(s.format_simple(attr.type, v), f"{path}/@{attr.name}"))
    if t.content == "simple":
        assert t.simple is not None
        el.text = _text(s.format_simple(t.simple, value.value), path)
        return el
    for name, child_decl in t.element.items():
        v = getattr(value, name)
        if v is None or (v is False and _is_flag(child_decl)):
            continue  # absent, or a flag that is not set
        if child_decl.repeated:
            for i, item in enumerate(v, 1):
                _write(el, child_decl, item, f"{path}/{name}[{i}]")
        else:
            _write(el, child_decl, v, f"{path}/{name}")
    return el


def _is_flag(decl: s.Element) -> bool:
    return isinstance(decl.type, s.SimpleType) and decl.type.fixed_true


def _serialise(value: BaseModel, root: s.Element) -> bytes:
    element = _write(None, root, value, "/" + root.name)
    # Check our own output with the reader: the bytes we emit must be what we accept.
    try:
        _Reader().element(element, root, "/" + root.name)
    except _Invalid as exc:
        raise CybertipError(ResponseCode.VALIDATION_FAILED, str(exc)) from None
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def report_to_xml(report: Report) -> bytes:
    """Serialise a report as schema-valid CyberTipline XML (UTF-8, with declaration).

    Used for reports that arrive as JSON. Raises 4100 if a value cannot be carried (e.g.
    a control character in a string).
    """
    return _serialise(report, s.REPORT)


def file_details_to_xml(fd: FileDetails) -> bytes:
    """Serialise file details as schema-valid ``<fileDetails>`` XML."""
    return _serialise(fd, s.FILE_DETAILS)


# --- writing, fast (bulk loads) ------------------------------------------------------------
#
# ``report_to_xml`` builds an lxml tree, walks it back through the reader and serialises it:
# right for a model that arrived as JSON from anyone, but most of a bulk load's CPU when the
# model was built and validated by the simulator a moment before. The fast writer walks the
# same format definition over the model into a string, with libxml2's escaping rules, and
# skips the read-back. It is the same function of the model: tests/test_xml_fast.py renders
# thousands of simulated reports both ways and asserts identical bytes (and that the fast
# bytes parse and validate against the XSD). Where a value holds a character XML cannot
# carry, it hands over to the checked writer, so the error (4100, with the path) is the same.

_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
# libxml2's serialiser: text escapes & < > and CR; attribute values also " and TAB, LF, CR.
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile('[&<>"\t\n\r]')
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_ATTR_ESCAPES = {**_TEXT_ESCAPES, '"': "&quot;", "\t": "&#9;", "\n": "&#10;"}


def _escape_text(value: str) -> str:
    if _TEXT_SPECIAL.search(value) is None:
        return value
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], value)


def _escape_attr(value: str) -> str:
    if _ATTR_SPECIAL.search(value) is None:
        return value
    return _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES[m.group()], value)


def _formatter(st: s.SimpleType) -> Any:
    """``format_simple`` bound to one type; strings (most values) skip the dispatch."""
    if st.base in ("boolean", "dateTime", "date", "double", "long", "int"):
        return lambda value: s.format_simple(st, value)

    def string(value: object) -> str:
        assert isinstance(value, str)
        return value

    return string


# Per complex type, once: (attributes, content, simple-content formatter, children), each
# child as (name, its declaration's type, repeated, a flag, the formatter of a simple type).
_Plan = tuple[
    tuple[tuple[str, Any], ...], str, Any, tuple[tuple[str, Any, bool, bool, Any], ...],
]
_plans: dict[int, _Plan] = {}


def _plan(t: s.ComplexType) -> _Plan:
    plan = _plans.get(id(t))
    if plan is None:
        attrs = tuple((a.name, _formatter(a.type)) for a in t.attributes)
        simple = _formatter(t.simple) if t.content == "simple" and t.simple is not None else None
        children = tuple(
            (name, d.type, d.repeated, _is_flag(d),
             _formatter(d.type) if isinstance(d.type, s.SimpleType) else None)
            for name, d in t.element.items()
        )
        plan = _plans[id(t)] = (attrs, t.content, simple, children)
    return plan


def _fast(out: list[str], name: str, t: s.ComplexType, value: Any) -> None:
    attrs, content, simple, children = _plan(t)
    out.append("<" + name)
    for attr, fmt in attrs:
        v = getattr(value, attr)
        if v is not None:
            out.append(f' {attr}="{_escape_attr(fmt(v))}"')
    if content == "simple":
        out.append(f">{_escape_text(simple(value.value))}</{name}>")
        return
    mark = len(out)
    out.append(">")
    for child, ct, repeated, flag, fmt in children:
        v = getattr(value, child)
        if v is None or (v is False and flag):
            continue  # absent, or a flag that is not set
        for item in (v if repeated else (v,)):
            if fmt is not None:
                out.append(f"<{child}>{_escape_text(fmt(item))}</{child}>")
            else:
                _fast(out, child, ct, item)
    if len(out) == mark + 1:
        out[mark] = "/>"  # no children: lxml writes an empty element
    else:
        out.append(f"</{name}>")


def _serialise_fast(value: BaseModel, root: s.Element) -> bytes:
    assert isinstance(root.type, s.ComplexType)
    out = [_DECLARATION]
    _fast(out, root.name, root.type, value)
    text = "".join(out)
    if _NOT_XML.search(text) is not None:
        return _serialise(value, root)  # raises the checked writer's 4100 with the path
    return text.encode("utf-8")


def report_to_xml_fast(report: Report) -> bytes:
    """``report_to_xml`` without reading the output back: for models built and validated in
    process (a bulk load). The same bytes for the same model (tests/test_xml_fast.py)."""
    return _serialise_fast(report, s.REPORT)


def file_details_to_xml_fast(fd: FileDetails) -> bytes:
    """``file_details_to_xml`` without reading the output back (see ``report_to_xml_fast``)."""
    return _serialise_fast(fd, s.FILE_DETAILS)
