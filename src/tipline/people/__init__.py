"""People and their work: accounts, roles, sign-in, the audit trail, and the services the
analyst console, the law-enforcement inbox and the platform view call.

Access is decided here, in the service layer: a caller is a :class:`Principal`, and a read of
an object outside its scope raises ``NotFound`` exactly as a missing object does.
"""

from tipline.people.principal import Principal

__all__ = ["Principal"]
