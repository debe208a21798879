"""The live web dashboard of a program or a bench's output: `researchorg dashboard DIR`, `researchorg run DIR
--dashboard`.

    frontier     every run a dot, main's running best as a step line, the noise floor as a band
    experiments  a table to filter, sort and search; each experiment with its diffs, evidence and live log
    agents       each one's state, branch, keep and reproduction rates, tokens and cost
    slots        a timeline of runs per slot, utilization, the queue
    messages     assignments, reports, digests, merges
    main         its merges, each one's gain and verification, the ablation's contributions
    knobs        a tuner's parameter importance and parallel coordinates
    bench        a bench output's curves, table and paired tests

It reads the ledger only (data.py) and updates the page through server-sent events (app.py). Offline: its
one library (uPlot) is in the package.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from researchorg.errors import ResearchOrgError

DEFAULT_PORT = 8765


@dataclass
class Dashboard:
    """A dashboard server bound to its address; `url` is where to open it (with its token, where one is
    needed). `serve()` serves until Ctrl-C; `start()` serves from a thread of this process (`run --dashboard`)
    until `stop()`."""

    url: str
    server: Any  # uvicorn.Server
    sock: socket.socket
    source: Any  # what it serves: dashboard.data.ProgramData or BenchData
    thread: threading.Thread | None = None

    def serve(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> Dashboard:
        self.thread = threading.Thread(target=self.serve, name="dashboard", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ResearchOrgError(f"the dashboard cannot listen on {host}:{port}: {err.strerror or err} (choose "
                               "another with --port, or 0 for any free port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def open_dashboard(directory: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Dashboard:
    """The dashboard of `directory` (a program or a bench output), bound to host:port (port 0: any free one).
    Every request needs a token, which the URL carries (on loopback too: agents share it)."""
    import uvicorn

    from researchorg.dashboard.app import create_app, is_loopback, new_token
    from researchorg.dashboard.data import open_source

    source = open_source(directory)
    token = new_token()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/?token={token}"
    servers: list[Any] = []
    app = create_app(source, token, loopback=is_loopback(host), cookie=f"researchorg_token_{bound}",
                     stopping=lambda: bool(servers) and servers[0].should_exit)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=3)  # event streams end within a second of Ctrl-C
    servers.append(uvicorn.Server(config))
    return Dashboard(url, servers[0], sock, source)


__all__ = ["DEFAULT_PORT", "Dashboard", "open_dashboard"]
