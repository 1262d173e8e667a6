"""One registry per kind: the closed sets of values the code, the CLI and the TOML tables share.

Each module here holds one kind (hash types, location classes, agency kinds, report states,
roles, outcome codes, …) as data: its members and their properties. CLI choices, TOML
validation and the code read them from here, so a value is never listed by hand twice.
Modules here import nothing of tipline's but other ``tipline.kinds`` modules.
"""
