"""A local stand-in for an OpenAI-compatible server: Chat Completions on 127.0.0.1, real wire format.

It answers `POST /v1/chat/completions` from a script: each request takes the
next reply, which is an assistant message with tool calls, a plain text
message, or an HTTP error status (429 with `retry-after-ms`, 500). Requests
are kept for assertions. The official SDK talks to it over real HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tool_call(name: str, arguments: dict[str, Any] | str) -> tuple[str, str]:
    return name, arguments if isinstance(arguments, str) else json.dumps(arguments)


@dataclass
class Reply:
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    status: int = 200


@dataclass
class FakeOpenAI:
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self
        ids = itertools.count(1)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                reply = fake.script.pop(0) if fake.script else Reply(text="(the script is over)")
                if reply.status != 200:
                    kind = "rate_limit_error" if reply.status == 429 else "server_error"
                    return self._send(reply.status, {"error": {"message": f"scripted {reply.status}", "type": kind}},
                                      {"retry-after-ms": "10"})
                n = next(ids)
                calls = [{"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": args}}
                         for i, (name, args) in enumerate(reply.tool_calls)]
                message: dict[str, Any] = {"role": "assistant", "content": reply.text}
                if calls:
                    message["tool_calls"] = calls
                self._send(200, {
                    "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000 + n,
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if calls else "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                })

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
