"""Local stand-ins for LLM providers on 127.0.0.1, speaking their real wire formats.

`FakeOpenAI` answers `POST /v1/chat/completions` (Chat Completions, as OpenAI,
vLLM, Ollama and llama.cpp serve it); `FakeAnthropic` answers `POST
/v1/messages` (the Messages API). Both follow a script: each request takes the
next reply, which is an assistant turn with tool calls and/or text, or an HTTP
error status (429 with `retry-after-ms`, 500). A request with `"stream": true`
gets the same reply as server-sent events in the provider's streaming format. With several agents on one
server, `scripts` holds a script per agent, chosen by the "You are NAME." line
researchorg's briefing starts with. Requests are kept for assertions. The official SDKs talk to them over real HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def tool_call(name: str, arguments: dict[str, Any] | str) -> tuple[str, dict[str, Any] | str]:
    return name, arguments


@dataclass
class Reply:
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    text: str | None = None
    status: int = 200


class ScriptedServer:
    route = ""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.scripts: dict[str, list[Reply]] = {}  # agent name -> its own script
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.0  # seconds each reply takes, like a model thinking
        self.default: Reply | None = None  # the reply once a script is over (default: plain text)
        self.models: list[str] | None = None  # the models GET /v1/models serves (None: whichever is asked for)
        self.key: str | None = None  # the only API key accepted (None: any)
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _refused(self) -> bool:
                given = self.headers.get("x-api-key") or self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.key is None or given == fake.key:
                    return False
                self._send(401, fake.error(401, "invalid x-api-key"))
                return True

            def do_GET(self) -> None:  # noqa: N802
                if self._refused():
                    return
                path = self.path.split("?")[0].rstrip("/")
                if path == "/v1/models":
                    return self._send(200, fake.model_list(fake.models or []))
                if path.startswith("/v1/models/"):
                    model = path.removeprefix("/v1/models/")
                    if fake.models is not None and model not in fake.models:
                        return self._send(404, fake.error(404, f"model: {model}"))
                    return self._send(200, fake.model(model))
                self._send(404, fake.error(404, f"no route {self.path}"))

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if self._refused():
                    return
                if self.path.split("?")[0].rstrip("/") != fake.route:
                    return self._send(404, fake.error(404, f"no route {self.path}"))
                script = next((s for name, s in fake.scripts.items() if f"You are {name}." in json.dumps(body)),
                              fake.script)
                reply = script.pop(0) if script else (fake.default or Reply(text="(the script is over)"))
                time.sleep(fake.delay)
                if reply.status == 200 and body.get("stream"):
                    return self._stream(fake.events(reply, next(fake._ids), body))
                if reply.status != 200:
                    return self._send(reply.status, fake.error(reply.status, f"scripted {reply.status}"),
                                      {"retry-after-ms": "10"})
                self._send(200, fake.render(reply, next(fake._ids), body))

            def _stream(self, events: list[tuple[str | None, str]]) -> None:
                """Server-sent events, as the providers stream them; the connection closes at the end."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                for event, data in events:
                    self.wfile.write(((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode())
                    self.wfile.flush()

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def render(self, reply: Reply, n: int, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def model(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def model_list(self, names: list[str]) -> dict[str, Any]:
        return {"object": "list", "data": [self.model(name) for name in names]}

    def error(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def events(self, reply: Reply, n: int, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        raise NotImplementedError


def _halves(text: str) -> list[str]:
    """A text in two pieces, as a stream delivers it."""
    middle = len(text) // 2
    return [piece for piece in (text[:middle], text[middle:]) if piece]


class FakeOpenAI(ScriptedServer):
    route = "/v1/chat/completions"

    def model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def render(self, reply: Reply, n: int, body: dict[str, Any]) -> dict[str, Any]:
        calls = [{"id": f"call_{n}_{i}", "type": "function",
                  "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                 for i, (name, args) in enumerate(reply.tool_calls)]
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if calls:
            message["tool_calls"] = calls
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000 + n,
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "rate_limit_error" if status == 429 else "server_error"}}

    def events(self, reply: Reply, n: int, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, str]:
            return None, json.dumps({"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
                                     "created": 1_700_000_000 + n, "model": body.get("model", "fake"),
                                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in _halves(reply.text or "")]
        for i, (name, args) in enumerate(reply.tool_calls):
            text = args if isinstance(args, str) else json.dumps(args)
            events.append(chunk({"tool_calls": [{"index": i, "id": f"call_{n}_{i}", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                       for piece in _halves(text)]
        events.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, json.dumps({"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
                                             "created": 1_700_000_000 + n, "model": body.get("model", "fake"),
                                             "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20,
                                                                      "total_tokens": 120}})))
        return events + [(None, "[DONE]")]


class FakeAnthropic(ScriptedServer):
    route = "/v1/messages"

    def model(self, name: str) -> dict[str, Any]:
        return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}

    def model_list(self, names: list[str]) -> dict[str, Any]:
        return {"data": [self.model(name) for name in names], "has_more": False,
                "first_id": names[0] if names else None, "last_id": names[-1] if names else None}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def render(self, reply: Reply, n: int, body: dict[str, Any]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        for i, (name, args) in enumerate(reply.tool_calls):
            # the Messages API carries tool input as a JSON object; a malformed call is one with bad arguments
            arguments = args if isinstance(args, dict) else {"raw": args}
            content.append({"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": arguments})
        return {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": content, "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 100, "output_tokens": 20}}

    def error(self, status: int, message: str) -> dict[str, Any]:
        kind = {429: "rate_limit_error", 404: "not_found_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def events(self, reply: Reply, n: int, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        message = self.render(reply, n, body)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 100, "output_tokens": 1}}
        events = [("message_start", {"type": "message_start", "message": start})]
        for i, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                events += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": piece}})
                           for piece in _halves(block["text"])]
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block":
                                                       {"type": "tool_use", "id": block["id"], "name": block["name"],
                                                        "input": {}}}))
                events += [("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "input_json_delta", "partial_json": piece}})
                           for piece in _halves(json.dumps(block["input"]))]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                                            "stop_sequence": None},
                                         "usage": {"output_tokens": 20}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return [(event, json.dumps(data)) for event, data in events]


class FakeResponses(ScriptedServer):
    """The OpenAI Responses API (`POST /v1/responses`), as the Codex CLI calls it. A tool call with a string
    argument is a custom (freeform) tool call, as Codex's `exec` takes its JavaScript; one with an object is a
    function call."""

    route = "/v1/responses"
    USAGE = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 120}

    def model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "fake"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _items(self, reply: Reply, n: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if reply.text:
            items.append({"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                          "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
        for i, (name, args) in enumerate(reply.tool_calls):
            if isinstance(args, str):
                items.append({"type": "custom_tool_call", "id": f"ctc_{n}_{i}", "call_id": f"call_{n}_{i}",
                              "name": name, "input": args, "status": "completed"})
            else:
                items.append({"type": "function_call", "id": f"fc_{n}_{i}", "call_id": f"call_{n}_{i}",
                              "name": name, "arguments": json.dumps(args), "status": "completed"})
        return items

    def render(self, reply: Reply, n: int, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"resp_{n}", "object": "response", "created_at": 1_700_000_000 + n, "status": "completed",
                "model": body.get("model", "fake"), "output": self._items(reply, n), "usage": self.USAGE}

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "rate_limit_error" if status == 429 else "server_error"}}

    def events(self, reply: Reply, n: int, body: dict[str, Any]) -> list[tuple[str | None, str]]:
        response = self.render(reply, n, body)
        events: list[dict[str, Any]] = [{"type": "response.created",
                                         "response": {**response, "status": "in_progress", "output": []}}]
        for i, item in enumerate(response["output"]):
            events.append({"type": "response.output_item.added", "output_index": i, "item": item})
            if item["type"] == "message":
                events += [{"type": "response.output_text.delta", "item_id": item["id"], "output_index": i,
                            "content_index": 0, "delta": piece} for piece in _halves(reply.text or "")]
            events.append({"type": "response.output_item.done", "output_index": i, "item": item})
        events.append({"type": "response.completed", "response": response})
        return [(e["type"], json.dumps(e)) for e in events]
