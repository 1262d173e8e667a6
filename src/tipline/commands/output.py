"""Text output a person can read: long values cut with their length stated, aligned tables.

Only the text output goes through here; ``--json`` output is always whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: Longest value printed whole in text output (a screen name can be megabytes).
CUT_AT = 200


def cut(value: object, limit: int = CUT_AT) -> str:
    """``value`` as text, cut after ``limit`` characters with the full length stated."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> list[str]:
    """Lines of a plain-text table: a header row, then one line per row, columns aligned.

    ``right``: indexes of columns aligned to the right (counts). The last column is not
    padded, so a long value there does not widen every line.
    """
    cells = [[str(v) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    right = set(right)

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        if len(header) - 1 not in right:
            parts[-1] = values[-1]
        return "  ".join(parts).rstrip()

    return [line(list(header)), *(line(r) for r in cells)]
