"""The analyst console: the triage queue, claims, the report page, file labels and the
analyst's decisions (issue 10, "Analyst console"). :mod:`tipline.console.service` holds the
use cases; :mod:`tipline.web.console` is the HTTP face of them."""
