"""The platform's view: a platform's staff see their own reports, the quality of each (what is
missing and why it matters to law enforcement) and the most common gaps month by month.

The service (:mod:`tipline.platform_view.service`) decides access: a caller needs
``Capability.PLATFORM_READ_OWN`` and sees only the reports of its own platform
(``principal.reporter_id``); any other report is :class:`~tipline.platform_view.service.NotFound`,
exactly as a report that does not exist. The page (``tipline.web.platform_page``) and the
JSON API (``tipline.platform_view.api``, used by ``tipline.web.api_v1``) sit on it.
"""
