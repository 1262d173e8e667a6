"""In-process timings of the pieces of one ISPWS cycle, without HTTP or concurrency.

Complements the py-spy profile: what each step costs on its own, single-threaded, on a
throwaway SQLite data dir. Usage: ``.venv/bin/python benchmarks/intake/micro.py [N]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import FILEINFO_TEMPLATE, REPORT_XML, bench_image  # noqa: E402

from tipline.config import Settings  # noqa: E402
from tipline.cybertip import xml as cxml  # noqa: E402
from tipline.intake.credentials import add_esp, verify_password_slow  # noqa: E402
from tipline.runtime import Runtime  # noqa: E402
from tipline.store.setup import do_init  # noqa: E402


def timeit(name: str, fn: Callable[[], object], n: int) -> float:
    fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    med = statistics.median(samples)
    print(f"{med:8.3f} ms  {name}")
    return med


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    image = bench_image()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(Path(tmp) / "data", database_url="")
        do_init(settings)
        rt = Runtime.open(settings)
        rep_id = add_esp(rt, "Micro", "micro", "micro-secret-1")
        cred = rt.auth.basic("micro", "micro-secret-1")
        assert cred is not None
        print(f"median of {n} (SQLite, synchronous=FULL, on {settings.data_dir})")
        timeit("argon2id verify (cache miss only)", lambda: verify_password_slow(
            "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$" + "A" * 43, "x"), 5)
        timeit("auth, cached (credential SELECT + HMAC)", lambda: rt.auth.basic("micro", "micro-secret-1"), n)
        timeit("parse + validate report XML", lambda: cxml.parse_report(REPORT_XML), n)
        parsed = cxml.parse_report(REPORT_XML)
        rid, _ = rt.intake.open_report(rep_id, parsed, source="ispws", body=REPORT_XML, content_type="text/xml")
        timeit("open_report (one transaction, commit)", lambda: rt.intake.open_report(
            rep_id, parsed, source="ispws", body=REPORT_XML, content_type="text/xml"), n)

        def write_only() -> None:
            w = rt.blobs.writer(10**9)
            w.write(image)
            w.abort()

        timeit("blob: encrypt + 3 hashes of 100 KB (no fsync)", write_only, n)
        counter = iter(range(10**9))

        def blob_commit() -> None:
            w = rt.blobs.writer(10**9)
            w.write(image + str(next(counter)).encode())
            w.commit()

        timeit("blob: encrypt + hash + fsync file + fsync dir", blob_commit, n)
        blob = rt.blobs.put(image)
        fids: list[str] = []

        def attach() -> None:
            fids.append(rt.intake.attach_file(rep_id, rid, blob, file_name="a.png", media_type="image/png"))

        timeit("attach_file (one transaction, commit)", attach, n)
        fid = fids[-1]
        body = FILEINFO_TEMPLATE.format(rid=rid, fid=fid).encode()
        timeit("parse + validate fileDetails XML", lambda: cxml.parse_file_details(body), n)
        fd = cxml.parse_file_details(body)
        timeit("file_info (one transaction, commit)", lambda: rt.intake.file_info(
            rep_id, fd, body=body, content_type="text/xml"), n)

        def finish() -> None:
            r, _ = rt.intake.open_report(rep_id, parsed, source="ispws", body=REPORT_XML, content_type="text/xml")
            rt.intake.finish(rep_id, r)

        timeit("open_report + finish (two transactions)", finish, n)
        rt.close()


if __name__ == "__main__":
    main()
