"""Command modules for the ``tipline`` CLI.

Each module here defines ``command`` (a ``click.Command`` or ``click.Group``); ``tipline.cli``
adds every one it finds, so a new command group never means editing a list elsewhere.
Commands get the data directory and settings through ``tipline.cli.Ctx`` (``@pass_ctx``).
"""
