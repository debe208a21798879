"""Stand-ins for the `claude` and `codex` command-line tools, for the tests.

They take the flags the real tools take in headless mode, edit files in their
working directory (claude: the current directory; codex: `-C DIR`) as the real
ones do with their edit tools, and print their results in the real formats:
claude's single JSON object, codex's JSON lines of events. What they do is read
from a plan (JSON, the file named by $FAKE_CLI_PLAN): one step per call, each
with edits, files to read (`reads`: what it got is appended to
$FAKE_CLI_PLAN.reads), files to write (`writes`), `environment` (the names of
its variables go to $FAKE_CLI_PLAN.env), a final text, or `hang` / `fail`. Every call's argv is appended to
$FAKE_CLI_PLAN.calls for assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _next_step() -> dict:
    plan = Path(os.environ["FAKE_CLI_PLAN"])
    with open(str(plan) + ".calls", "a") as calls:
        calls.write(json.dumps(sys.argv) + "\n")
    steps = json.loads(plan.read_text())
    done = sum(1 for _ in open(str(plan) + ".calls")) - 1
    return steps[done] if done < len(steps) else {"text": "DESCRIPTION: nothing to do"}


def _apply(step: dict, root: Path) -> None:
    if step.get("hang"):
        time.sleep(3600)
    if step.get("fail"):
        print("Error: simulated failure", file=sys.stderr)
        sys.exit(1)
    for path in step.get("reads", []):  # a shell tool reading a file: what it got goes beside the plan
        try:
            Path(path).read_bytes()
            seen = "read"
        except OSError as err:
            seen = f"refused: {err.strerror}"
        with open(os.environ["FAKE_CLI_PLAN"] + ".reads", "a") as reads:
            reads.write(json.dumps([path, seen]) + "\n")
    for path, text in step.get("writes", []):  # its own settings, say (`~` is the HOME it was given)
        target = Path(os.path.expanduser(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if step.get("environment"):  # which variables it was given (names only)
        Path(os.environ["FAKE_CLI_PLAN"] + ".env").write_text(json.dumps(sorted(os.environ)))
    for edit in step.get("edits", []):  # as the real CLIs' edit tools: a refused write is reported, not fatal
        target = root / edit["path"]
        try:
            target.write_text(target.read_text().replace(edit["old"], edit["new"]))
        except OSError as err:
            print(f"edit of {edit['path']} failed: {err}", file=sys.stderr)


def claude(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="claude")
    parser.add_argument("-p", "--print", dest="prompt")
    parser.add_argument("initial_prompt", nargs="?")
    parser.add_argument("--output-format", choices=["text", "json", "stream-json"], default="text")
    parser.add_argument("--permission-mode", choices=["default", "acceptEdits", "plan", "bypassPermissions"])
    parser.add_argument("--allowedTools")
    parser.add_argument("--mcp-config", action="append", default=[])
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    if args.prompt is None:  # interactive: show the prompt, then wait for the person at the keyboard
        print(f"claude (interactive) > {args.initial_prompt or ''}", flush=True)
        for _ in sys.stdin:
            pass
        return
    if args.permission_mode == "bypassPermissions" and os.geteuid() == 0:
        sys.exit("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons")
    step = _next_step()
    _apply(step, Path.cwd())
    print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": step.get("text", ""),
                      "session_id": "fake", "total_cost_usd": 0.0123,
                      "usage": {"input_tokens": 1500, "output_tokens": 300}}))


def codex(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="codex")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("exec")
    run.add_argument("--json", action="store_true")
    run.add_argument("-s", "--sandbox", choices=["read-only", "workspace-write", "danger-full-access"])
    run.add_argument("-c", "--config", action="append", default=[])
    run.add_argument("--disable", action="append", default=[])
    run.add_argument("--skip-git-repo-check", action="store_true")
    run.add_argument("-C", "--cd", dest="cd", default=".")
    run.add_argument("-m", "--model")
    run.add_argument("prompt")
    args = parser.parse_args(argv)
    step = _next_step()
    print(json.dumps({"type": "thread.started", "thread_id": "fake"}), flush=True)
    print(json.dumps({"type": "turn.started"}), flush=True)
    _apply(step, Path(args.cd))
    print(json.dumps({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message",
                                                         "text": step.get("text", "")}}))
    print(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 2000, "cached_input_tokens": 0,
                                                          "output_tokens": 400}}))


VERSIONS = {"claude": "2.0.37 (Claude Code)", "codex": "codex-cli 0.171.0"}

if __name__ == "__main__":
    if sys.argv[1:] == ["--version"]:
        print(VERSIONS[Path(sys.argv[0]).name])
        sys.exit(0)
    {"claude": claude, "codex": codex}[Path(sys.argv[0]).name](sys.argv[1:])
