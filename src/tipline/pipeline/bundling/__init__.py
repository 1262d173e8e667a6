"""Bundling: reports about the same content, user or incident grouped into one incident.

An incident is a connected group of reports under one rule of ``data/bundling.toml`` (docs/
routing.md). The modules, in the order one reads them:

- ``rules`` — the rules, and what a plan says (key, members, each member's reason);
- ``reference`` — the whole partition at once by union-find: the answer the others must give;
- ``search`` — one report's group re-planned by a search over its links, rows made to agree;
- ``incremental`` — one report's incident updated from its new links alone (``leave``: a
  report moving out of its incident; ``stored``: the reads they share);
- ``bulk`` — a group of reports at once (union-find over the components they touch, only
  changed rows written), and the whole store rebuilt in one pass.

The ``bundles`` stage (``tipline.pipeline.stages.bundles``) tries ``incremental`` and falls
back to ``search``; tests/test_bundles.py checks both equal ``reference``. Its group form uses
``bulk``; tests/test_bundles_bulk.py checks it writes what the per-report stage writes.
"""
