"""Load generator, Python flavour (aiohttp): the same cycles and output as client.mjs.

Kept to measure what a Python client costs next to the Node one (see benchmarks/README.md);
``run.py --client aiohttp`` uses it. Usage: ``python client_aiohttp.py CONFIG.json``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import re
import struct
import sys
import time
import zlib
from typing import Any

import aiohttp

STEPS = ("submit", "upload", "fileinfo", "finish")
BOUNDARY = "----tiplinebench7MA4YWxkTrZu0gW"
IEND_LEN = 12
TEXT_DATA = 6 + 32


class Failure(Exception):
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step = step


def tag(body: str, name: str) -> str | None:
    m = re.search(f"<{name}>([^<]*)</{name}>", body)
    return m.group(1) if m else None


def summary(values: list[float]) -> dict[str, float | int | None]:
    s = sorted(values)

    def at(p: float) -> float | None:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] if s else None

    return {"n": len(s), "p50": at(50), "p90": at(90), "p95": at(95), "p99": at(99),
            "mean": sum(s) / len(s) if s else None, "max": s[-1] if s else None}


class Bench:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.base = str(cfg["base"]).rstrip("/")
        self.auth = "Basic " + base64.b64encode(f"{cfg['user']}:{cfg['password']}".encode()).decode()
        with open(cfg["report"], "rb") as fh:
            self.report = fh.read()
        with open(cfg["image"], "rb") as fh:
            image = fh.read()
        text_start = len(image) - IEND_LEN - (12 + TEXT_DATA)
        self.image_head, self.image_tail = image[:text_start], image[-IEND_LEN:]
        self.salt = f"{os.getpid():08x}{int(time.time() * 1000):x}"[-16:].rjust(16, "0")
        self.uniq = 0
        self.measuring = False
        self.stopping = False
        self.cycles = 0
        self.started = 0
        self.cycle_ms: list[float] = []
        self.step_ms: dict[str, list[float]] = {s: [] for s in STEPS}
        self.failures: dict[str, int] = {}
        self.samples: list[str] = []

    def text_chunk(self) -> bytes:
        self.uniq += 1
        data = f"bench\0{self.salt}{self.uniq:016x}".encode("latin-1")
        return struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))

    async def post(self, session: aiohttp.ClientSession, step: str, path: str, ctype: str, body: bytes) -> str:
        t = time.perf_counter()
        async with session.post(self.base + path, data=body,
                                headers={"Authorization": self.auth, "Content-Type": ctype}) as resp:
            text = await resp.text()
            status = resp.status
        if self.measuring:
            self.step_ms[step].append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise Failure(step, f"HTTP {status}")
        code = tag(text, "responseCode")
        if code != "0":
            raise Failure(step, f"responseCode {code}")
        return text

    async def cycle(self, session: aiohttp.ClientSession) -> float:
        t0 = time.perf_counter()
        body = await self.post(session, "submit", "/submit", "text/xml; charset=utf-8", self.report)
        rid = tag(body, "reportId")
        if not rid:
            raise Failure("submit", "no reportId")
        content = self.image_head + self.text_chunk() + self.image_tail
        md5 = hashlib.md5(content).hexdigest()
        form = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n{rid}\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"standin.png\"\r\n"
            "Content-Type: image/png\r\n\r\n"
        ).encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()
        body = await self.post(session, "upload", "/upload", f"multipart/form-data; boundary={BOUNDARY}", form)
        fid = tag(body, "fileId")
        if not fid:
            raise Failure("upload", "no fileId")
        if tag(body, "hash") != md5:
            raise Failure("upload", "wrong hash")
        info = str(self.cfg["fileinfo"]).replace("{rid}", rid).replace("{fid}", fid).encode()
        body = await self.post(session, "fileinfo", "/fileinfo", "text/xml; charset=utf-8", info)
        if tag(body, "fileId") != fid:
            raise Failure("fileinfo", "wrong fileId")
        body = await self.post(session, "finish", "/finish", "application/x-www-form-urlencoded",
                               f"id={rid}".encode())
        if f"<files><fileId>{fid}</fileId></files>" not in body:
            raise Failure("finish", "file not listed")
        return (time.perf_counter() - t0) * 1000

    async def user(self, session: aiohttp.ClientSession) -> None:
        while not self.stopping:
            if self.measuring:
                self.started += 1
            try:
                ms = await self.cycle(session)
                if self.measuring:
                    self.cycles += 1
                    self.cycle_ms.append(ms)
            except Exception as exc:
                if self.measuring:
                    step = exc.step if isinstance(exc, Failure) else "network"
                    self.failures[step] = self.failures.get(step, 0) + 1
                    if len(self.samples) < 10:
                        self.samples.append(repr(exc))

    async def run(self) -> None:
        conc = int(self.cfg["concurrency"])
        connector = aiohttp.TCPConnector(limit=conc)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            users = [asyncio.create_task(self.user(session)) for _ in range(conc)]
            await asyncio.sleep(float(self.cfg["warmup"]))
            self.measuring = True
            cpu0, w0 = time.process_time(), time.perf_counter()
            emit({"event": "measure"})
            end = w0 + float(self.cfg["seconds"])
            while (now := time.perf_counter()) < end:
                await asyncio.sleep(min(5.0, end - now))
                if time.perf_counter() < end - 0.01:
                    emit({"event": "tick", "elapsed": time.perf_counter() - w0, "cycles": self.cycles})
            self.measuring = False
            window, cpu = time.perf_counter() - w0, time.process_time() - cpu0
            emit({"event": "stop"})
            self.stopping = True
            await asyncio.gather(*users)
        emit({
            "event": "done", "client": "aiohttp", "window_s": window, "cycles": self.cycles,
            "cycles_started": self.started, "failures": self.failures, "failure_samples": self.samples,
            "cycle_ms": summary(self.cycle_ms),
            "step_ms": {s: summary(v) for s, v in self.step_ms.items()},
            "client_cpu_s": cpu,
        })


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    try:
        import uvloop
    except ImportError:
        asyncio.run(Bench(cfg).run())
    else:
        uvloop.run(Bench(cfg).run())


if __name__ == "__main__":
    main()
