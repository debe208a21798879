"""The dashboard's web app: FastAPI, a JSON API over data.py, server-sent events, and the page's static files.

Security, since the page shows what agents wrote and may be reached from another machine:

- every request needs the token printed at start (`?token=`, which also sets a cookie for the page's own
  requests, or an `Authorization: Bearer` header), on loopback too: an agent's coding CLI shares this
  machine's loopback, and must not read other agents' diffs and logs through it;
- bound to loopback (the default), it also answers only requests whose Host is a loopback name (a web page
  elsewhere cannot reach it through DNS rebinding);
- no route takes a path: files are served from the package's static directory only, logs by experiment
  number, and only from inside the program's directory;
- the page puts every text agents wrote into the document as text (never as markup), and the Content
  Security Policy allows no script but the page's own files;
- it reads the ledger through a read-only connection: it never writes it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response  # JSONResponse as is: no jsonable_encoder pass
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from researchorg.dashboard.data import BenchData, ProgramData
from researchorg.errors import LabError

STATIC = Path(__file__).parent / "static"
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def host_of(header: str) -> str:
    """The host name of a Host header (`[::1]:8765`, `localhost`, `127.0.0.1:80`)."""
    try:
        return urlsplit(f"//{header}").hostname or ""
    except ValueError:
        return ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(source: ProgramData | BenchData, token: str, loopback: bool = True,
               stopping: Callable[[], bool] = lambda: False, cookie: str = "researchorg_token") -> FastAPI:
    """The app over one program or bench output. `token`: required on every request; `loopback`: the server
    listens on loopback, so a request addressed to any other name is refused. `stopping()`: the server is
    shutting down (event streams end). `cookie`: the token's cookie (named after the port: cookies are shared
    by a host's ports)."""
    app = FastAPI(title="researchorg dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if loopback and not is_loopback(host_of(request.headers.get("host") or "")):
            return Response("this dashboard answers only on this machine's loopback address\n", 403,
                            media_type="text/plain")
        given = request.query_params.get("token") or request.cookies.get(cookie) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Response("a token is required: open the address the dashboard printed at start\n", 401,
                            media_type="text/plain")
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(cookie, token, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(LabError)
    async def _lab_error(_request: Request, err: LabError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=404)

    def program() -> ProgramData:
        if not isinstance(source, ProgramData):
            raise HTTPException(404, "this dashboard serves a bench's output, not a program")
        return source

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/overview")
    def overview() -> JSONResponse:
        return JSONResponse(source.overview())

    @app.get("/api/frontier")
    def frontier() -> JSONResponse:
        return JSONResponse(program().frontier())

    @app.get("/api/experiments")
    def experiments(agent: str | None = None, status: str | None = None, kind: str | None = None,
                    q: str | None = None, sort: str = "id", desc: bool = True, offset: int = 0,
                    limit: int = 100) -> JSONResponse:
        return JSONResponse(program().experiments(agent, status, kind, q, sort, desc, max(0, offset), limit))

    @app.get("/api/experiments/{id_}")
    def experiment(id_: int) -> JSONResponse:
        return JSONResponse(program().experiment(id_))

    @app.get("/api/experiments/{id_}/log")
    def log(id_: int, offset: int | None = None) -> JSONResponse:
        return JSONResponse(program().log(id_, offset))

    @app.get("/api/agents")
    def agents() -> JSONResponse:
        return JSONResponse(program().agents())

    @app.get("/api/slots")
    def slots() -> JSONResponse:
        return JSONResponse(program().slots())

    @app.get("/api/messages")
    def messages(limit: int = 300) -> JSONResponse:
        return JSONResponse(program().messages(max(1, min(limit, 5000))))

    @app.get("/api/main")
    def main() -> JSONResponse:
        return JSONResponse(program().main())

    @app.get("/api/knobs")
    def knobs() -> JSONResponse:
        return JSONResponse(program().knobs())

    @app.get("/api/bench")
    def bench() -> JSONResponse:
        if not isinstance(source, BenchData):
            raise HTTPException(404, "this dashboard serves a program, not a bench's output")
        return JSONResponse(source.bench())

    @app.get("/api/stream", response_class=EventSourceResponse)
    async def stream(request: Request) -> AsyncIterator[ServerSentEvent]:
        """A `change` event whenever the ledger has moved (checked every second), with its version; the page
        then reloads what it shows."""
        sent = -1
        while not stopping() and not await request.is_disconnected():
            version = await run_in_threadpool(source.refresh)
            if version != sent:
                sent = version
                yield ServerSentEvent(data={"version": version}, event="change", retry=2000)
            for _ in range(4):
                if stopping():
                    return
                await asyncio.sleep(0.25)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def new_token() -> str:
    return secrets.token_urlsafe(24)
