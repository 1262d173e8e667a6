"""What every command is handed: the settings of the instance named on the command line.

A leaf module: it imports only click and the settings, so any command module can use it
without importing ``tipline.cli`` (which would be a circle) or the database stack (which
would make ``tipline --help`` slow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from tipline.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tipline.runtime import Runtime


class Ctx:
    """The ``--data-dir`` and settings of this invocation; opens the instance on demand."""

    def __init__(self, data_dir: str | None) -> None:
        self.settings = Settings.from_env(data_dir)

    def runtime(self) -> Runtime:
        """The open instance: database, blob store, intake and authenticator."""
        from tipline.runtime import Runtime

        return Runtime.open(self.settings)

    @contextmanager
    def database(self) -> Iterator[sessionmaker[Session]]:
        """Only the database, for a command that reads rows and needs no intake, blobs or auth.

        Made by the same functions as the runtime's, without importing the intake stack
        (XML, schema, encryption): most of what a read command would otherwise load.
        """
        from tipline.store.db import make_engine, make_sessionmaker

        key = self.settings.effective_key_file
        if not key.exists():  # the runtime's own test of an initialised instance, same message
            raise click.ClickException(f"no blob key at {key}: run `tipline init` (data dir {self.settings.data_dir})")
        engine = make_engine(self.settings.effective_database_url)
        try:
            yield make_sessionmaker(engine)
        finally:
            engine.dispose()

    @contextmanager
    def opened(self) -> Iterator[Runtime]:
        """The open instance for a ``with`` block, closed after it."""
        rt = self.runtime()
        try:
            yield rt
        finally:
            rt.close()


pass_ctx = click.make_pass_decorator(Ctx)


class LazyChoice(click.Choice[str]):
    """A ``click.Choice`` whose values come from a function called on first use.

    For choices defined by a heavy module (the simulator's calibrated years, the hash-bank
    formats): building the command for ``--help`` must not import it.
    """

    def __init__(self, values: Callable[[], Sequence[str]], case_sensitive: bool = True) -> None:
        self._values = values
        self._resolved: tuple[str, ...] | None = None
        super().__init__([], case_sensitive=case_sensitive)

    @property
    def choices(self) -> tuple[str, ...]:
        if self._resolved is None:
            self._resolved = tuple(self._values())
        return self._resolved

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        # click.Choice.__init__ assigns the (empty) list; the function is the source of truth.
        pass
