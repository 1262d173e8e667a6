"""How long /transparency/YEAR takes: from the store on every view (no export) against the
report published from the year's columnar export (computed once, then read back).

    PYTHONPATH=src .venv/bin/python benchmarks/transparency/page.py --dir EXPORT [--slice 3000] [--runs 3]

``--dir`` is a synthetic export (benchmarks/transparency/bench.py --keep); its first
``--slice`` reports are loaded into a fresh SQLite store (bench.load_slice), whose own export
the page then publishes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402


def _views(client: Any, path: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = client.get(path)
        out.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text[:300]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--slice", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from tipline.stats import columnar
    from tipline.web.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="tipline-page-"))
    try:
        rt = bench.load_slice(args.dir, args.slice, tmp / "data")
        out: dict[str, Any] = {"reports": args.slice, "load average (1 min) before": round(os.getloadavg()[0], 1)}
        with TestClient(create_app(runtime=rt)) as c:
            store = _views(c, "/transparency/2023", args.runs)
            t0 = time.perf_counter()
            columnar.export(rt.sessions, bench.YEAR, columnar.default_dir(rt.settings.data_dir, bench.YEAR))
            out["export s"] = round(time.perf_counter() - t0, 2)
            first = _views(c, "/transparency/2023", 1)
            published = _views(c, "/transparency/2023", args.runs)
        rt.close()
        out.update({"store path, median s": round(statistics.median(store), 3),
                    "published: first view (computed from the export) s": round(first[0], 3),
                    "published: later views, median s": round(statistics.median(published), 3),
                    "store / published": round(statistics.median(store) / statistics.median(published), 1),
                    "load average (1 min) after": round(os.getloadavg()[0], 1)})
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
