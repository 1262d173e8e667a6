"""Help text is not cut off: every command's one-line summary fits where click lists it."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tipline.cli import HELP_WIDTH, main, walk

GROUPS = [(path, cmd) for path, cmd in walk(main, ["tipline"]) if isinstance(cmd, click.Group)]


@pytest.mark.parametrize("width", [80, HELP_WIDTH])
@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(p) for p, _ in GROUPS])
def test_command_lists_are_not_truncated(path: list[str], group: click.Group, width: int) -> None:
    out = CliRunner().invoke(main, [*path[1:], "--help"], terminal_width=width, catch_exceptions=False).output
    listing = out.split("\nCommands:\n", 1)[1].splitlines()
    ctx = click.Context(group, info_name=path[-1])
    names = [n for n in group.list_commands(ctx) if not group.get_command(ctx, n).hidden]  # type: ignore[union-attr]
    assert [line.split()[0] for line in listing if line.strip()] == names
    for line in listing:
        assert not line.rstrip().endswith(("...", "…")), f"cut off at {width} columns: {line.strip()!r}"
    for name in names:  # ... and each summary is the command's whole first sentence
        summary = group.get_command(ctx, name).get_short_help_str(10_000)  # type: ignore[union-attr]
        assert f"{name}  " in out and summary in " ".join(out.split()), (name, summary)


def test_every_help_page_renders_without_ellipsis() -> None:
    for path, _ in walk(main, ["tipline"]):
        out = CliRunner().invoke(main, [*path[1:], "--help"], terminal_width=80, catch_exceptions=False).output
        body = out.split("\n", 1)[1]  # the usage line's [ARGS]... is click's notation, not a cut
        assert "..." not in body and "…" not in body, " ".join(path)
