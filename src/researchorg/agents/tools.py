"""The tools an LLM agent works with, the same for every provider.

Each tool has a JSON schema (given to the model) and a Python implementation
over the agent's worktree, the ledger and the messages. Tools never run
anything: the experiment is run by the lab after `submit`. A write outside the
editable files is refused with an error the model reads, so it can correct
itself; whatever reaches a commit is checked again by the lab's guard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from researchorg.agents import beneath, custom_tools
from researchorg.agents.base import AgentContext
from researchorg.config import OrgSpec, Skill, ToolSpec, parse_skill, skill_folder
from researchorg.errors import ConfigError
from researchorg.report.summary import SUMMARY_DIFF_CHARS, summarize

MAX_READ_CHARS = 60_000
READ_LIMIT = 16 << 20  # bytes of a file the tools read whole


class ToolError(Exception):
    """A tool call the model got wrong; the message goes back to the model."""


@dataclass
class Submission:
    description: str
    hypothesis: str


@dataclass
class Toolbox:
    ctx: AgentContext
    allowed: list[str] | None = None  # tool names this role may use; None: all
    submission: Submission | None = None
    finished: bool = False  # a lead called `done`
    calls: list[str] = field(default_factory=list)
    on_submit: Callable[[Submission], str] | None = None  # where a submission goes beside `submission` (MCP: the
    # ledger, for the running org to take); its text is the tool's answer
    _found: dict[str, tuple[ToolSpec, dict[str, Any]]] | None = None  # the custom tools, described once

    def schemas(self) -> list[dict[str, Any]]:
        """The tools as JSON schemas (name, description, parameters) that fit this agent's role."""
        role = self.ctx.role
        submits = role is None or role.submits
        wanted = {spec["name"] for spec in _SPECS} - ({"done", "assign"} if submits else {"submit", *_EDITS})
        if self.ctx.worktree is None:
            wanted -= {"list_files", "read_file"}  # no files to read (a lead beside the org, or in simulation)
        if self.ctx.merge is None:
            wanted.discard("merge")
        if self.ctx.idle is None:
            wanted.discard("assign")  # the running engine's team hands assignments out (not a process beside it)
        if role is None or not role.skills:
            wanted -= {"list_skills", "load_skill"}
        builtin = [spec for spec in _SPECS if spec["name"] in wanted]
        return [spec for spec in [*builtin, *(schema for _, schema in self._custom().values())]
                if self.allowed is None or spec["name"] in {*self.allowed, "submit", "done"}]

    def _custom(self) -> dict[str, tuple[ToolSpec, dict[str, Any]]]:
        """The role's own tools (the org's `[[tools]]` and its `[[roles.custom_tools]]`), by the name the model
        calls: a function's own, or an MCP server's NAME_TOOL; each with its schema. One that cannot be described
        is left out, and said once in the ledger."""
        if self._found is not None:
            return self._found
        builtin = {spec["name"] for spec in _SPECS}  # never in the place of one (check refuses the name)
        found: dict[str, tuple[ToolSpec, dict[str, Any]]] = {}
        for tool in self.ctx.role.custom_tools if self.ctx.role is not None else []:
            try:
                if tool.python is not None:
                    described = [custom_tools.schema(tool, self.ctx.task.root)]
                else:
                    described = custom_tools.mcp_schemas(tool, self.ctx.task.root, self._tool_cwd())
            except (custom_tools.CustomToolError, ToolError) as err:
                self.ctx.ledger.log_event("tool_failed", agent=self.ctx.name, tool=tool.name, reason=str(err))
                continue
            found.update({s["name"]: (tool, s) for s in described if s["name"] not in builtin})
        self._found = found
        return found

    def _tool_cwd(self) -> Path:
        """Where the agent's tools run: its worktree, or for a lead (none) a folder of its own."""
        if self.ctx.worktree is not None:
            return Path(self.ctx.worktree)
        if self.ctx.state_dir is None:
            raise ToolError("the org's own tools run in the real lab only")
        folder = Path(self.ctx.state_dir) / "tools"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _call_custom(self, name: str, tool: ToolSpec, args: dict[str, Any]) -> str:
        try:
            worktree = self._tool_cwd()
            if tool.python is not None:
                return custom_tools.call(tool, args, worktree, self.ctx.task)
            return custom_tools.mcp_call(tool, self.ctx.task.root, name.removeprefix(f"{tool.name}_"), args,
                                         worktree, self.ctx.task)
        except custom_tools.CustomToolError as err:
            self.ctx.ledger.log_event("tool_failed", agent=self.ctx.name, tool=name, reason=str(err))
            raise ToolError(str(err)) from None

    def call(self, name: str, arguments: str | dict[str, Any]) -> str:
        """Run one tool call; a mistake comes back as an `error: ...` string for the model."""
        self.calls.append(name)
        try:
            if name not in {spec["name"] for spec in self.schemas()}:
                raise ToolError(f"tool {name} is not available to this role")
            args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments or {})
            if not isinstance(args, dict):
                raise ToolError("arguments must be a JSON object")
            custom = self._custom()
            if name in custom:
                return self._call_custom(name, custom[name][0], args)
            method = getattr(self, f"_tool_{name}", None)
            if method is None:
                raise ToolError(f"no tool named {name!r}")
            _check_types(name, args)
            return method(**args)
        except json.JSONDecodeError as err:
            return f"error: the arguments are not valid JSON ({err.msg} at position {err.pos}); call the tool again"
        except TypeError as err:
            return f"error: wrong arguments for {name}: {err}"
        except (ToolError, ConfigError, OSError, UnicodeDecodeError) as err:
            return f"error: {err}"

    # the tools -----------------------------------------------------------------------
    def _tool_list_files(self) -> str:
        files = sorted(p.relative_to(self.ctx.worktree).as_posix() for p in self.ctx.worktree.rglob("*")
                       if p.is_file() and ".git" not in p.parts and ".researchorg" not in p.parts)
        task = self.ctx.task
        return "\n".join(f"{f}  ({'editable' if task.is_editable(f) else 'read-only'})" for f in files)

    def _tool_read_file(self, path: str) -> str:
        text = self._read(self._inside(path))
        return text if len(text) <= MAX_READ_CHARS else text[:MAX_READ_CHARS] + "\n... (truncated)"

    def _tool_write_file(self, path: str, content: str) -> str:
        beneath.write_bytes(self.ctx.worktree, self._editable(path), content.encode())
        return f"wrote {path} ({len(content)} characters)"

    def _tool_replace_in_file(self, path: str, old: str, new: str) -> str:
        relative = self._editable(path)
        text = self._read(relative)
        count = text.count(old)
        if count != 1:
            raise ToolError(f"`old` occurs {count} times in {path}; it must occur exactly once")
        beneath.write_bytes(self.ctx.worktree, relative, text.replace(old, new).encode())
        return f"replaced 1 occurrence in {path}"

    def _tool_results(self, limit: int = 15) -> str:
        return history_summary(self.ctx, limit)

    def _tool_best_diff(self) -> str:
        metric = self.ctx.task.metric
        best = summarize(self.ctx.ledger.experiments(status="keep", diff_chars=SUMMARY_DIFF_CHARS), metric).best
        if best is None:
            return "no kept experiment yet"
        diff = self.ctx.ledger.experiment(best.id).diff  # the scan above cut the diffs short
        return f"best: #{best.id} by {best.agent}, {metric.name} {best.metric:.6f}: {best.description}\n{diff}"

    def _tool_noise_floor(self) -> str:
        floors = self.ctx.ledger.noise_floors()
        if not floors:
            return "no noise floor measured yet"
        latest = {f.hardware: f for f in floors}  # the latest estimate of each hardware class
        name = self.ctx.task.metric.name
        return "\n".join(f"{hw}: {name} {f.mean:.6f} +- {f.sigma:.6f} per run (95% interval of sigma "
                         f"{f.sigma_low:.6f}..{f.sigma_high:.6f}; {len(f.runs)} runs of the baseline)"
                         for hw, f in latest.items())

    def _tool_experiment(self, id: int) -> str:
        try:
            e = self.ctx.ledger.experiment(id)
        except Exception:
            raise ToolError(f"no experiment #{id}") from None
        decision = e.summary.get("decision") or {}
        value = f"{e.metric:.6f}" if e.metric is not None else "-"
        lines = [f"#{e.id} {e.kind} by {e.agent}: {e.status}, {self.ctx.task.metric.name} {value}",
                 f"description: {e.description}", f"hypothesis: {e.hypothesis or '-'}"]
        if decision:
            lines.append(f"decision: {decision.get('rule', '')}; {decision.get('text', '')}".rstrip("; "))
        if e.reason:
            lines.append(f"reason: {e.reason.splitlines()[0]}")
        diff = e.diff if len(e.diff) <= MAX_READ_CHARS else e.diff[:MAX_READ_CHARS] + "\n... (truncated)"
        return "\n".join(lines) + (f"\n{diff}" if diff else "")

    def _tool_read_messages(self) -> str:
        inbox = self.ctx.inbox()
        if not inbox:
            return "no messages"
        return "\n\n".join(f"#{m.id} {m.kind} from {m.sender} to {m.recipient or 'everyone'}:\n{m.body}"
                           for m in inbox[-10:])

    def _tool_send_message(self, to: str, body: str, kind: str = "note") -> str:
        try:
            message_id = self.ctx.send(None if to in ("all", "everyone") else to, kind, body)
        except ValueError as err:
            raise ToolError(str(err)) from None
        return f"sent message #{message_id}"

    def _tool_assign(self, to: str, body: str) -> str:
        if not body.strip():
            raise ToolError("say in `body` what the experiment is")
        if to in ("all", "everyone"):
            raise ToolError("an assignment goes to one researcher; name it in `to`")
        try:
            message_id = self.ctx.send(to, "assignment", body)
        except ValueError as err:
            raise ToolError(str(err)) from None
        return f"assigned as message #{message_id}: {to} runs it when it is free, and its result is reported to you"

    def _tool_submit(self, description: str, hypothesis: str = "") -> str:
        if not description.strip():
            raise ToolError("describe the experiment in `description`")
        submission = Submission(description.strip().splitlines()[0][:200], hypothesis.strip())
        answer = self.on_submit(submission) if self.on_submit is not None else \
            "submitted: the lab will commit and run your change"
        self.submission = submission
        return answer

    def _tool_merge(self, experiment: int) -> str:
        return self.ctx.merge(experiment)

    def _tool_list_skills(self) -> str:
        return "\n".join(f"{s.name}: {s.spec.description}" for s in role_skills(self.ctx))

    def _tool_load_skill(self, name: str) -> str:
        skill = next((s for s in role_skills(self.ctx) if s.name == name), None)
        if skill is None:
            raise ToolError(f"no skill {name!r} (list_skills names them)")
        beside = skill.files()
        rel = skill.folder.relative_to(self.ctx.worktree).as_posix() if self.ctx.worktree else str(skill.folder)
        more = f"\n\nFiles of this skill (read_file): {', '.join(f'{rel}/{f}' for f in beside)}" if beside else ""
        return skill.body + more

    def _tool_done(self, summary: str = "") -> str:
        self.finished = True
        return "done until something new happens"

    # -----------------------------------------------------------------------------------
    # Paths are checked by their words and opened beneath the worktree one component at a time, never
    # following a link (agents/beneath.py): an agent that swaps a file for a link meanwhile gets an error.
    def _inside(self, path: str) -> str:
        try:
            return "/".join(beneath.parts_of(path))
        except beneath.Refused as err:
            raise ToolError(str(err)) from None

    def _editable(self, path: str) -> str:
        relative = self._inside(path)
        if not self.ctx.task.is_editable(relative):
            raise ToolError(f"{relative} is not editable (editable: {', '.join(self.ctx.task.editable)})")
        return relative

    def _read(self, relative: str) -> str:
        try:
            data = beneath.read_bytes(self.ctx.worktree, relative, READ_LIMIT + 1)
        except (FileNotFoundError, IsADirectoryError):
            raise ToolError(f"no file {relative}") from None
        if len(data) > READ_LIMIT:
            raise ToolError(f"{relative} is larger than {READ_LIMIT >> 20} MiB")
        return data.decode()


def history_summary(ctx: AgentContext, limit: int = 15) -> str:
    """A short, bounded account of the program's results: the best so far and the latest experiments."""
    metric = ctx.task.metric
    experiments = [e for e in ctx.ledger.experiments(diff_chars=SUMMARY_DIFF_CHARS) if e.status != "running"]
    if not experiments:
        return "no experiments yet: start with the baseline (submit without changing anything)"
    best = summarize(experiments, metric).best
    lines = [f"{len(experiments)} experiments so far ({metric.name}, {metric.direction})."]
    if best is not None:
        lines.append(f"best: #{best.id} {best.metric:.6f} by {best.agent}: {best.description}")
    for e in experiments[-limit:]:
        value = f"{e.metric:.6f}" if e.metric is not None else "-"
        mine = " (you)" if e.agent == ctx.name else ""
        reason = f" [{e.reason.splitlines()[0]}]" if e.reason else ""
        lines.append(f"#{e.id} {e.agent}{mine} {e.status} {value}: {e.description}{reason}")
    return "\n".join(lines)


_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
               "object": (dict,)}


def check_tools(org: OrgSpec, org_file: Path) -> None:
    """Each custom tool of the org is usable: its file is next to the org file, its name is not a built-in
    tool's, and its function loads and has a schema (its module is imported in a subprocess). One ConfigError
    each, naming the file and the tool."""
    builtin = {spec["name"] for spec in _SPECS}
    seen: set[str] = set()
    for role in org.roles:
        for tool in role.custom_tools:
            key = tool.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            where = f"{org_file}: tool {tool.name}"
            if tool.name in builtin:
                raise ConfigError(f"{where}: a built-in tool has that name; choose another")
            if tool.mcp is not None:
                try:
                    listed = custom_tools.mcp_schemas(tool, org_file.parent, org_file.parent)
                except custom_tools.CustomToolError as err:
                    raise ConfigError(f"{where}: the MCP server does not answer: "
                                      f"{str(err).split(': ', 1)[-1]}") from None
                if not listed:
                    raise ConfigError(f"{where}: the MCP server lists no tools")
                clash = sorted({s["name"] for s in listed} & builtin)
                if clash:
                    raise ConfigError(f"{where}: its tool {clash[0]} has a built-in tool's name; rename the tool")
                continue
            if not (org_file.parent / tool.file).is_file():
                raise ConfigError(f"{where}: no file {tool.file} next to the org file")
            try:
                custom_tools.schema(tool, org_file.parent)
            except custom_tools.CustomToolError as err:
                raise ConfigError(f"{where}: {tool.python} does not load: {str(err).split(': ', 1)[-1]}") from None


def role_skills(ctx: AgentContext) -> list[Skill]:
    """The skills of the agent's role, as its head holds them (init copied them into the program)."""
    found = []
    for entry in ctx.role.skills if ctx.role is not None else []:
        relative = skill_folder(entry)
        where = f"{relative}/SKILL.md"
        try:
            text = ctx.read(where)
        except FileNotFoundError:
            raise ToolError(f"skill {relative} is not in the program (no {where})") from None
        folder = ctx.worktree / relative if ctx.worktree is not None else Path(relative)
        found.append(parse_skill(text, where, folder))
    return found


def _check_types(name: str, args: dict[str, Any]) -> None:
    """Each argument of the JSON type its schema says (a model's `{"path": ["a"]}` is its mistake to read)."""
    spec = next(spec for spec in _SPECS if spec["name"] == name)
    for key, value in args.items():
        wanted = spec["parameters"]["properties"].get(key, {}).get("type")
        if wanted is None:
            continue  # an unknown argument: the call itself says so
        ok = isinstance(value, _JSON_TYPES[wanted]) and not (wanted in ("integer", "number") and isinstance(value,
                                                                                                            bool))
        if not ok:
            raise ToolError(f"argument `{key}` of {name} must be a JSON {wanted}, not {type(value).__name__}")


def _spec(name: str, doc: str, /, **properties: Any) -> dict[str, Any]:
    required = [k for k, v in properties.items() if not v.pop("optional", False)]
    return {"name": name, "description": doc,
            "parameters": {"type": "object", "properties": properties, "required": required}}


_STR = {"type": "string"}
_EDITS = ("write_file", "replace_in_file")  # a lead (submits = false) changes no file
_SPECS = [
    _spec("list_files", "List the files of the task and whether each is editable."),
    _spec("read_file", "Read a file of the task.", path=dict(_STR)),
    _spec("write_file", "Replace the whole content of an editable file.", path=dict(_STR), content=dict(_STR)),
    _spec("replace_in_file", "Replace `old` (which must occur exactly once) by `new` in an editable file.",
          path=dict(_STR), old=dict(_STR), new=dict(_STR)),
    _spec("results", "The best result so far and the latest experiments of everyone.",
          limit={"type": "integer", "optional": True}),
    _spec("best_diff", "The diff of the best kept experiment."),
    _spec("noise_floor", "How much the metric varies between runs of the same code (the noise floor), per "
          "hardware class: a gain smaller than about two of its sigmas is not evidence."),
    _spec("experiment", "One experiment: what it changed, its result, the decision and its evidence (confounds "
          "included), and its diff.", id={"type": "integer"}),
    _spec("read_messages", "Your latest messages."),
    _spec("send_message", "Send a message to an agent, or to `everyone`.", to=dict(_STR), body=dict(_STR),
          kind={"type": "string", "optional": True}),
    _spec("assign", "Give a researcher one well-scoped experiment to run (a lead's tool): it answers the oldest "
          "assignment it has when it is free, and its result comes back to you as a report.", to=dict(_STR),
          body=dict(_STR)),
    _spec("submit", "Submit the current state of your editable files as one experiment. Call once, last.",
          description=dict(_STR), hypothesis={"type": "string", "optional": True}),
    _spec("merge", "Merge a kept experiment into the program branch (it must beat the program's best; "
          "if the branch moved, the merge is run again first).", experiment={"type": "integer"}),
    _spec("list_skills", "The skills of your role: what each is for. Load one with load_skill when it applies."),
    _spec("load_skill", "The instructions of one skill (and the files beside it).", name=dict(_STR)),
    _spec("done", "End this turn; you are called again when an experiment finishes or a message arrives.",
          summary={"type": "string", "optional": True}),
]
