"""The `claude-code` and `codex` backends: headless runs of the coding CLIs people already use.

Each proposal is one run of the CLI in the agent's worktree with the role's
prompt files, the task's program.md and a bounded briefing from the ledger:
`claude -p ... --output-format json --permission-mode acceptEdits` (a mode that
works as root, unlike skipping permissions) or `codex exec --json --sandbox
danger-full-access --disable shell_tool --disable unified_exec -C WORKTREE
...` with stdin from /dev/null (Codex's own sandbox cannot start inside ours,
and ours confines the whole CLI; neither CLI gets a shell). Each call gets the
lab's tools (results, evidence, the noise floor, messages, skills, submit) as
the MCP server `lab`: an endpoint on 127.0.0.1 for that call alone
(agents/mcp_server.py), named in `--mcp-config` (Claude Code) or `-c
mcp_servers.lab.url=...` (Codex); a `submit` through it describes the change.
The CLI edits files with its own tools; the lab then commits what changed and
its guard rejects anything outside the editable files. The CLI is told not to run the training: the lab does,
on a slot. It runs in the kernel sandbox of harness/sandbox.py: its worktree
(protected files and `.git` read-only) and a home of its own (its settings,
`sandbox_paths`, copied there once) writable, the system read-only, the network
open for its provider, no secret but its provider's key; the ledger, logs,
slots, other worktrees and the task's `sealed` data are not in its view.
A lead (`submits = false`) is one CLI run per turn with a lead's lab tools
(`assign`, `merge`, `done`) and its whole worktree read-only; Claude Code
then runs in its `default` permission mode with only `Read, Glob, Grep`
beside the lab's tools, so an edit is refused and recorded. A
CLI that fails or hangs past `cli_timeout` is killed (its whole process
group) and the agent is paused with the reason; at Ctrl-C it is killed at
once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from researchorg.agents.base import AgentContext, Proposal
from researchorg.agents.llm import briefing, system_prompt
from researchorg.agents.options import CodingCLIOptions
from researchorg.agents.tools import Toolbox, ToolError, role_skills
from researchorg.config import RoleSpec
from researchorg.errors import AgentError
from researchorg.harness import sandbox
from researchorg.ledger import Experiment

INSTRUCTIONS = """
Work only in the editable files of this directory, with your own tools. Do not run the training or
the evaluation: the lab runs your change on a compute slot once you finish. Finish with two lines:
DESCRIPTION: <one line saying what you changed>
HYPOTHESIS: <what you expect and why>
"""

LEAD_INSTRUCTIONS = """
You lead this organization: you run no experiment and edit no file. Work through the tools of the MCP server
`lab`: `results`, `experiment` and `noise_floor` to judge what the researchers found, `assign` to give a
waiting researcher one well-scoped experiment, `merge` for a kept experiment that truly beats the program's
best, and `done` when you have nothing more to do until the next result or message.
"""

INSTALL = {"claude-code": "npm install -g @anthropic-ai/claude-code", "codex": "npm install -g @openai/codex"}
COMMAND = {"claude-code": "claude", "codex": "codex"}
HOMES = {"claude-code": ["~/.claude", "~/.claude.json"], "codex": ["~/.codex", "~/.agents"]}  # settings, logins, skills
SKILLS_DIR = {"claude-code": ".claude/skills", "codex": ".agents/skills"}  # where each loads a user's skills
PROVIDER_ENV = {"claude-code": ("ANTHROPIC_", "CLAUDE_"), "codex": ("OPENAI_", "CODEX_")}  # the keys it may have
STOP_POLL_SECONDS = 0.5  # how often a CLI run looks whether the run was stopped


class CodingCLIAgent:
    def __init__(self, role: RoleSpec, ctx: AgentContext):
        self.role, self.backend = role, role.backend
        self.options = CodingCLIOptions.model_validate(role.options)
        command = self.options.command or COMMAND[self.backend]
        self.executable = shutil.which(command)
        if self.executable is None:
            raise AgentError(f"role {role.name}: the {self.backend} backend needs the `{command}` command on PATH "
                             f"({INSTALL[self.backend]})")

    def propose(self, ctx: AgentContext) -> Proposal | None:
        while ctx.ledger.take_submission(ctx.name) is not None:
            pass  # a submission from before this call does not describe what the call changes
        prompt = "\n\n".join([system_prompt(self.role, ctx), briefing(ctx), INSTRUCTIONS])
        text = self._session(prompt, ctx)
        if text is None:
            return None
        description, hypothesis = _labelled(text, "DESCRIPTION"), _labelled(text, "HYPOTHESIS")
        submitted = None
        while (taken := ctx.ledger.take_submission(ctx.name)) is not None:  # its `submit` through MCP: the last
            submitted = taken
        if submitted is not None:
            description, hypothesis = submitted.description, submitted.hypothesis or hypothesis
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return Proposal(description or first_line[:200] or f"change by {self.backend}", hypothesis,
                        data={"backend": self.backend})

    def act(self, ctx: AgentContext) -> None:
        """A lead's turn (a role with `submits = false`): one CLI run that reads the results and the messages,
        assigns and merges through the lab's MCP tools, and edits nothing (its worktree is read-only to it)."""
        if ctx.worktree is None:
            raise AgentError(f"the {self.backend} backend leads in the real lab only")
        self._session("\n\n".join([system_prompt(self.role, ctx), briefing(ctx), LEAD_INSTRUCTIONS]), ctx)

    def _session(self, prompt: str, ctx: AgentContext) -> str | None:
        """One run of the CLI with the lab's tools on an endpoint of its own; its final text (None if the run
        stopped first). Its token usage, and the tool calls its permissions refused, go to the ledger."""
        endpoint = None
        if ctx.worktree is not None:  # the lab's tools for this call, on loopback (the sandbox hides the ledger)
            from researchorg.agents.mcp_server import HttpEndpoint, instructions, to_ledger

            box = Toolbox(ctx, on_submit=to_ledger(ctx.ledger, ctx.name, self.backend))
            endpoint = HttpEndpoint(box, instructions(ctx.task.name, ctx.name, lead=not self.role.submits))
        try:
            output = self._run(self._argv(prompt, ctx, endpoint.url if endpoint else None), ctx)
        finally:
            if endpoint is not None:
                endpoint.close()
        if output is None:
            return None
        text, usage = parse_claude(output) if self.backend == "claude-code" else parse_codex(output)
        ctx.ledger.record_usage(ctx.name, self.options.model or self.backend, usage.get("input_tokens", 0),
                                usage.get("output_tokens", 0), usage.get("cost_usd", 0.0))
        if usage.get("refused"):  # tool calls its permissions refused (running the training, say)
            ctx.ledger.log_event("cli_refused", agent=ctx.name, backend=self.backend, tools=usage["refused"])
        return text

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """Nothing to keep: the next run's briefing comes from the ledger."""

    def _argv(self, prompt: str, ctx: AgentContext, mcp_url: str | None = None) -> list[str]:
        """The CLI's command line; `mcp_url`: the lab's MCP endpoint for this call, as its server `lab`."""
        model = ["--model", self.options.model] if self.options.model else []
        if self.backend == "claude-code":
            default = ["Read", "Edit", "Write", "Glob", "Grep"] if self.role.submits else ["Read", "Glob", "Grep"]
            tools, lab = list(self.options.tools or default), []
            if mcp_url:
                tools.append("mcp__lab")  # every tool of the server `lab`
                lab = ["--mcp-config", json.dumps({"mcpServers": {"lab": {"type": "http", "url": mcp_url}}})]
            mode = "acceptEdits" if self.role.submits else "default"  # a lead's edits are refused, not accepted
            return [self.executable, "-p", prompt, "--output-format", "json", "--permission-mode", mode,
                    "--allowedTools", ",".join(tools), *lab, *model]
        lab = ["-c", f"mcp_servers.lab.url={json.dumps(mcp_url)}"] if mcp_url else []
        # Codex's own sandbox does not start inside ours (its writes fail): ours confines the whole CLI instead;
        # and it gets no shell (the lab runs the training), as Claude Code gets no Bash
        return [self.executable, "exec", "--json", "--sandbox", "danger-full-access", "--disable", "shell_tool",
                "--disable", "unified_exec", "--skip-git-repo-check", "-C", str(ctx.worktree), *lab, *model, prompt]

    def _sandboxed(self, argv: list[str], ctx: AgentContext) -> tuple[list[str], dict[str, str]]:
        """`argv` in the agent's sandbox, and its environment. Its worktree (protected files and `.git`
        read-only) and own state are writable; its settings (`sandbox_paths` in the home directory) are copied
        once into a home of its own in its state directory, so what it writes there (hooks, instructions)
        never reaches yours; the system is read-only; the program's ledger, logs, slots and other worktrees
        and the task's sealed data are not in its view; the network is open (its provider's API). Of the
        environment's secrets it gets only its provider's."""
        home = Path(ctx.state_dir or Path(ctx.worktree) / ".researchorg-home") / "home"
        real_home = Path(os.path.expanduser("~"))
        shared = []
        for entry in self.options.sandbox_paths if self.options.sandbox_paths is not None else HOMES[self.backend]:
            path = Path(os.path.expanduser(entry))
            if not path.is_relative_to(real_home):
                shared.append(path)  # a path of its own the role names: shared as it is
                continue
            private = home / path.relative_to(real_home)
            if path.exists() and not private.exists():
                private.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():
                    shutil.copytree(path, private, symlinks=True, ignore=shutil.ignore_patterns("projects"))
                else:
                    shutil.copy2(path, private)
        home.mkdir(parents=True, exist_ok=True)
        self._install_skills(ctx, home)
        real = Path(os.path.realpath(self.executable))  # npm's bin entry is a link out of the sandbox's view
        # the CLI's own installation: the node_modules holding it (a launcher may run a sibling package's binary)
        installed = next((p for p in real.parents if p.name == "node_modules"), real.parent.parent)
        argv = [str(real), *argv[1:]]
        readonly = [Path(ctx.worktree) / p for p in ctx.task.protected_files()] if self.role.submits else \
            [Path(ctx.worktree)]  # a lead reads the code and changes none
        policy = sandbox.policy_for(Path(ctx.worktree), [home, *(p for p in shared if p.exists())], network=True,
                                    read=[installed], hidden=ctx.task.sealed_paths(), readonly=readonly)
        provider = PROVIDER_ENV[self.backend]
        env = {k: v for k, v in os.environ.items() if not sandbox.is_secret(k) or k.startswith(provider)}
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home / ".tmp")  # the system's /tmp is read-only to it
        (home / ".tmp").mkdir(exist_ok=True)
        return sandbox.confined(argv, policy, Path(ctx.worktree)), env

    def _install_skills(self, ctx: AgentContext, home: Path) -> None:
        """The role's skills, as the agent's head holds them, where the CLI loads a user's skills natively (real
        copies: Codex skips a linked skill), beside your own skills copied from your home (an org skill of the
        same name replaces yours there). Those it installed last time are replaced, so an edited or dropped
        skill does not linger."""
        try:
            skills = role_skills(ctx)
        except ToolError as err:
            raise AgentError(str(err)) from None
        target = home / SKILLS_DIR[self.backend]
        manifest = home.parent / "installed-skills.json"  # outside the home: the CLI cannot write it
        previous = json.loads(manifest.read_text()) if manifest.is_file() else []
        for name in previous:
            if re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(name)):
                shutil.rmtree(target / name, ignore_errors=True)
        for skill in skills:
            skill.install(target)
        manifest.write_text(json.dumps([s.name for s in skills]))

    def _run(self, argv: list[str], ctx: AgentContext) -> str | None:
        """The CLI's output; None if the run stopped (Ctrl-C) first: its whole process group is killed."""
        env = dict(os.environ)
        if ctx.worktree is not None:
            argv, env = self._sandboxed(argv, ctx)
        proc = subprocess.Popen(argv, cwd=ctx.worktree, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
        deadline = time.monotonic() + self.options.cli_timeout
        while True:
            try:
                out, err = proc.communicate(timeout=STOP_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if ctx.stop.is_set() or time.monotonic() >= deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    if ctx.stop.is_set():
                        return None
                    raise AgentError(f"the {self.backend} CLI did not finish in {self.options.cli_timeout:g} s; "
                                     "killed") from None
        if proc.returncode != 0:
            last = (err or out).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            raise AgentError(f"the {self.backend} CLI failed (exit code {proc.returncode}): {last[0][:300]}")
        return out


def probe(role: RoleSpec) -> str:
    """Whether the CLI is on PATH and runs (`--version`)."""
    options = CodingCLIOptions.model_validate(role.options)
    command = options.command or COMMAND[role.backend]
    executable = shutil.which(command)
    if executable is None:
        raise AgentError(f"role {role.name}: the {role.backend} backend needs the `{command}` command on PATH "
                         f"({INSTALL[role.backend]})")
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AgentError(f"role {role.name}: `{command} --version` did not run: {err}") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise AgentError(f"role {role.name}: `{command} --version` failed: {last[0][:200]}")
    return f"{command} {done.stdout.strip().splitlines()[0] if done.stdout.strip() else ''}".strip()


def parse_claude(output: str) -> tuple[str, dict[str, Any]]:
    """The final text and usage of `claude -p --output-format json`."""
    try:
        result = json.loads(output)
    except json.JSONDecodeError:
        raise AgentError("the claude CLI did not print its JSON result") from None
    if result.get("is_error") or result.get("subtype") not in (None, "success"):
        raise AgentError(f"the claude CLI reported an error: {str(result.get('result', result))[:300]}")
    usage = result.get("usage") or {}
    refused = [str(d.get("tool_name", "?")) for d in result.get("permission_denials") or [] if isinstance(d, dict)]
    return result.get("result") or "", {"input_tokens": usage.get("input_tokens", 0),
                                        "output_tokens": usage.get("output_tokens", 0),
                                        "cost_usd": result.get("total_cost_usd", 0.0), "refused": refused}


def parse_codex(output: str) -> tuple[str, dict[str, Any]]:
    """The last agent message and the usage of `codex exec --json` (one JSON event per line)."""
    text, usage, refused, error, completed = "", {"input_tokens": 0, "output_tokens": 0}, [], None, False
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            text = item.get("text", "")
        elif event.get("type") == "item.completed" and item.get("type") == "file_change" \
                and item.get("status") == "failed":  # an edit the sandbox refused (a protected file, say)
            refused += [f"apply_patch {c.get('path', '?')}" for c in item.get("changes") or [] if isinstance(c, dict)]
        elif event.get("type") == "turn.completed":
            completed = True
            for key in usage:
                usage[key] += (event.get("usage") or {}).get(key, 0)
        elif event.get("type") == "turn.failed":
            raise AgentError(f"the codex CLI reported an error: {str(event.get('error') or event)[:300]}")
        elif event.get("type") == "error":  # also its retries ("Reconnecting... 1/5"): fatal only if no turn ends
            error = event
    if error is not None and not completed:
        raise AgentError(f"the codex CLI reported an error: {str(error.get('message') or error)[:300]}")
    return text, {**usage, "refused": refused}


def _labelled(text: str, label: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip().upper().startswith(label + ":"):
            return line.split(":", 1)[1].strip()
    return ""
