"""ISPWS Basic auth: requests that miss the recent-credential memo together share one check."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from typing import Any

from starlette.requests import Request

from tipline.intake.credentials import Principal
from tipline.web.ispws import Authenticate


def request(user: str, password: str) -> Request:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Request({"type": "http", "method": "POST", "path": "/ispws/submit",
                    "headers": [(b"authorization", f"Basic {token}".encode())]})


class FakeAuth:
    """Stands in for the Authenticator: no memo hits, a slow check that counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def recent_basic(self, user: str, password: str) -> Principal | None:
        return None

    def basic(self, user: str, password: str) -> Principal | None:
        with self.lock:
            self.calls.append((user, password))
        time.sleep(0.2)  # the database round trip, long enough for the others to arrive
        if self.fail:
            raise OSError("database went away")
        return Principal(1, "ESP", 1, user) if password == "right-secret" else None


class FakeRuntime:
    def __init__(self, auth: FakeAuth) -> None:
        self.auth = auth


def run_all(auth: FakeAuth, requests: list[Request]) -> list[Any]:
    authenticate = Authenticate(FakeRuntime(auth))  # type: ignore[arg-type]

    async def main() -> list[Any]:
        return await asyncio.gather(*(authenticate(r) for r in requests), return_exceptions=True)

    return asyncio.run(main())


def test_concurrent_misses_share_one_check_per_credential() -> None:
    auth = FakeAuth()
    out = run_all(auth, [request("esp", "right-secret") for _ in range(10)]
                  + [request("esp", "wrong-secret") for _ in range(5)])
    assert sorted(auth.calls) == [("esp", "right-secret"), ("esp", "wrong-secret")]
    assert all(isinstance(p, Principal) and p.username == "esp" for p in out[:10])
    assert out[10:] == [None] * 5  # a wrong password is not let in by sharing a right one's check
    # Once the check is over, the next miss checks again (nothing is remembered here).
    run_all(auth, [request("esp", "right-secret")])
    assert len(auth.calls) == 3


def test_a_failed_check_fails_every_waiter_and_is_not_kept() -> None:
    auth = FakeAuth(fail=True)
    out = run_all(auth, [request("esp", "right-secret") for _ in range(4)])
    assert len(auth.calls) == 1 and all(isinstance(e, OSError) for e in out)
    # The failure is not remembered: the next request checks again.
    again = run_all(auth, [request("esp", "right-secret")])
    assert len(auth.calls) == 2 and isinstance(again[0], OSError)
