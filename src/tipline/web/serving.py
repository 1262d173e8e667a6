"""Running ``tipline serve`` with several worker processes, one listening socket each.

uvicorn's ``--workers N`` shares one listening socket among the workers, and whichever is
awake first accepts: a platform that opens its keep-alive connections in a burst lands
nearly all of them on one worker (measured in benchmarks/intake: 31 of 32 connections on
one of two workers), which then does all the work on one core while the other idles.
With ``SO_REUSEPORT`` (Linux) each worker listens on its own socket bound to the same
address, and the kernel spreads new connections over them by a hash of the client's
address and port.

The parent binds every socket before starting any worker (so the address is taken or the
start fails at once, as with uvicorn's own bind) and keeps them open for the life of the
service: a worker that dies is replaced on the same socket, and connections waiting in its
backlog are then accepted by the replacement. Supervision (health checks, restarts,
signals) is uvicorn's own ``Multiprocess``; only the socket each worker gets differs.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def reuse_port_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int, n: int, backlog: int) -> list[socket.socket]:
    """``n`` listening sockets on one address, each with ``SO_REUSEPORT``.

    Port 0 picks a free port for the first socket; the others bind to the same one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.socket(family=family)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's supervisor, with worker ``i`` always serving on socket ``i``."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets=[])
        self.slots = sockets
        self.processes_num = len(sockets)

    def _new(self, idx: int) -> Process:
        return Process(self.config, [self.slots[idx]])

    def init_processes(self) -> None:
        for idx in range(self.processes_num):
            process = self._new(idx)
            process.start()
            self.processes.append(process)

    def restart_all(self) -> None:
        # As uvicorn's: the replacement is ready before the old worker is retired.
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._new(idx)
            new_process.start()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error("New child process [%s] was not ready in time; keeping worker [%s].",
                                 new_process.pid, old_process.pid)
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        # As uvicorn's, with the dead worker's own socket handed to its replacement.
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("Child process [%s] died", process.pid)
            replacement = self._new(idx)
            replacement.start()
            self.processes[idx] = replacement


def run_reuse_port(app: str, *, host: str, port: int, workers: int, **kwargs: object) -> None:
    """Serve the ASGI ``app`` (an import string) with ``workers`` processes, one socket each."""
    config = Config(app, host=host, port=port, workers=workers, **kwargs)  # type: ignore[arg-type]
    try:
        socks = bind_reuse_port(host, port, workers, config.backlog)
    except OSError as exc:
        logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    bound = socks[0].getsockname()
    logger.info("Uvicorn running on http://%s:%d with %d workers, one SO_REUSEPORT socket each "
                "(Press CTRL+C to quit)", host, bound[1], workers)
    try:
        ReusePortMultiprocess(config, socks).run()
    except KeyboardInterrupt:
        pass
    finally:
        for sock in socks:
            sock.close()
