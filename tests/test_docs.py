"""Docs that cannot drift: every setting, command, option, code and API path is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from tipline.cli import cli_reference, main, walk
from tipline.config import setting_env_names
from tipline.cybertip.codes import ResponseCode

DOCS = Path(__file__).resolve().parents[1] / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize("env", setting_env_names())
def test_every_setting_documented(env: str) -> None:
    assert f"`{env}`" in read("operations.md"), f"{env} missing from docs/operations.md"


def test_cli_reference_is_current() -> None:
    assert read("cli.md") == cli_reference(), "regenerate: tipline cli-reference > docs/cli.md"


def _commands(cmd: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
    # The CLI loads its subcommands lazily: walk it as click lists them, not ``.commands``.
    return [(" ".join(p), c) for p, c in walk(cmd, path)]


@pytest.mark.parametrize(("path", "cmd"), _commands(main, ["tipline"]),
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_every_command_and_option_documented(path: str, cmd: click.Command) -> None:
    guide = read("operations.md")
    if not isinstance(cmd, click.Group) and path != "tipline demo":
        assert f"{path}" in guide, f"`{path}` is not explained in docs/operations.md"
    ref = read("cli.md")
    for opt in cmd.params:
        for name in getattr(opt, "opts", []):
            if name.startswith("--"):
                assert name in ref


@pytest.mark.parametrize("code", list(ResponseCode))
def test_every_response_code_documented(code: ResponseCode) -> None:
    assert re.search(rf"^\| {int(code)} \|", read("intake.md"), re.M), f"code {int(code)} missing"


def test_every_json_api_path_documented() -> None:
    # The schema only needs the routes, not a database: build it from a throwaway runtime.
    import tempfile

    from tipline.config import Settings
    from tipline.runtime import Runtime
    from tipline.store.setup import do_init
    from tipline.web.app import create_app

    with tempfile.TemporaryDirectory() as d:
        settings = Settings.from_env(d)
        do_init(settings)
        rt = Runtime.open(settings)
        schema = create_app(runtime=rt).openapi()
        rt.close()
    api = read("api.md")
    assert schema["paths"], "the JSON API publishes no paths"
    for path, methods in schema["paths"].items():
        for method in methods:
            assert f"{method.upper()} {path}" in api, f"{method.upper()} {path} missing from docs/api.md"


def test_architecture_names_every_package() -> None:
    # A package (or top-level module) missing from the map is a room a newcomer cannot find.
    page = read("architecture.md")
    src = Path(__file__).resolve().parents[1] / "src" / "tipline"
    names = [f"{p.name}/" for p in src.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    names += [p.name for p in src.glob("*.py") if p.name != "__init__.py"]
    missing = [n for n in sorted(names) if f"`{n}`" not in page and f"{n}`" not in page]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_every_page_is_in_the_readme_index() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"](docs/{p.name})" not in readme]
    assert not missing, f"README.md's documentation list lacks {missing}"


#: Staff page prefixes and the guide that must name every route under them.
PAGE_GUIDES = {"/supervise/": "analyst.md", "/admin/": "admin.md"}


def test_every_settings_and_accounts_route_is_documented() -> None:
    # The routes come from the app itself: a new page under these prefixes fails here until
    # its guide names it (as "METHOD /path/{param}").
    import tempfile

    from fastapi.routing import iter_route_contexts

    from tipline.config import Settings
    from tipline.runtime import Runtime
    from tipline.store.setup import do_init
    from tipline.web.app import create_app

    with tempfile.TemporaryDirectory() as d:
        settings = Settings.from_env(d)
        do_init(settings)
        rt = Runtime.open(settings)
        routes = [(m, str(ctx.path_format)) for ctx in iter_route_contexts(create_app(runtime=rt).routes)
                  for m in (ctx.methods or ()) if m != "HEAD"]
        rt.close()
    checked = 0
    for prefix, guide in PAGE_GUIDES.items():
        text = read(guide)
        for method, path in routes:
            if path.startswith(prefix):
                checked += 1
                assert f"{method} {path}" in text, f"{method} {path} is not named in docs/{guide}"
    assert checked >= 10, "the settings and accounts routes were not found"


def test_every_screenshot_the_docs_show_is_committed() -> None:
    # Screenshots are written by the browser tests only with TIPLINE_SCREENSHOTS=1, so a page
    # can be documented with an image nobody ever committed (three supervisor pages were).
    root = DOCS.parent
    missing = sorted({f"docs/{m}" for doc in [root / "README.md", *DOCS.glob("*.md")]
                      for m in re.findall(r"screenshots/[\w.-]+\.png", doc.read_text(encoding="utf-8"))
                      if not (DOCS / m).is_file()})
    assert missing == []
