"""What every LLM backend shares: the proposal loop, caps, usage accounting, prompts and briefing.

A proposal is one short conversation: the role's prompt files and the task's
program.md as the system prompt, then a compact, bounded briefing built from
the ledger (results and messages; never an ever-growing chat over the night),
then tool calls until the model calls `submit`. A model that talks without
acting is nudged; after `max_turns` calls the agent is paused. The provider
SDKs retry rate limits and server errors with backoff (`max_retries`); what
still fails pauses the agent with the provider's error. Tokens and cost go to
the ledger per call, and a role over its token or money cap stops.

A backend subclasses `LLMAgent` and speaks its provider's message format in
`_call`, `_tool_results` and `_user`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from researchorg.agents.base import AgentContext, Proposal
from researchorg.agents.options import LLMOptions
from researchorg.agents.tools import Toolbox, history_summary
from researchorg.config import RoleSpec
from researchorg.errors import AgentError
from researchorg.ledger import Experiment

NUDGE = "Use the tools to change the editable files, then call `submit`. Do not stop before submitting."


@dataclass
class Turn:
    """One model call, in provider-neutral terms."""

    assistant: dict[str, Any]  # the assistant message to append to the conversation, provider format
    calls: list[tuple[str, str, Any]]  # (call id, tool name, arguments as JSON text or dict)
    input_tokens: int
    output_tokens: int


class LLMAgent:
    backend = "llm"

    def __init__(self, role: RoleSpec, ctx: AgentContext):
        self.role, self.options = role, LLMOptions.model_validate(role.options)

    # the provider's part ------------------------------------------------------------
    def _call(self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        raise NotImplementedError

    def _tool_results(self, results: list[tuple[str, str]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _user(self, text: str) -> dict[str, Any]:
        return {"role": "user", "content": text}

    # the loop ------------------------------------------------------------------------
    def propose(self, ctx: AgentContext) -> Proposal | None:
        self._check_caps(ctx)
        toolbox = Toolbox(ctx, self.options.tools)
        system = self._system(ctx)
        messages = [self._user(briefing(ctx))]
        for _ in range(self.options.max_turns):
            turn = self._call(system, messages, toolbox.schemas())
            self._record_usage(ctx, turn)
            messages.append(turn.assistant)
            if not turn.calls:
                messages.append(self._user(NUDGE))
                continue
            messages += self._tool_results([(id_, toolbox.call(name, args)) for id_, name, args in turn.calls])
            if toolbox.submission is not None:
                return Proposal(toolbox.submission.description, toolbox.submission.hypothesis,
                                data={"backend": self.backend, "model": self.options.model, "tools": toolbox.calls})
        raise AgentError(f"no submission after {self.options.max_turns} model calls")

    def act(self, ctx: AgentContext) -> None:
        """A lead's turn: read results and messages, send assignments, merge; until `done` or no more tool calls."""
        self._check_caps(ctx)
        toolbox = Toolbox(ctx, self.options.tools)
        messages = [self._user(briefing(ctx))]
        for _ in range(self.options.max_turns):
            turn = self._call(self._system(ctx), messages, toolbox.schemas())
            self._record_usage(ctx, turn)
            messages.append(turn.assistant)
            if not turn.calls:
                return
            messages += self._tool_results([(id_, toolbox.call(name, args)) for id_, name, args in turn.calls])
            if toolbox.finished:
                return
        raise AgentError(f"did not finish its turn in {self.options.max_turns} model calls")

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """Nothing to keep in memory: the next briefing is built from the ledger."""

    def _system(self, ctx: AgentContext) -> str:
        """The system prompt; a role with skills is told they exist (their text is loaded on demand, by tool)."""
        skills = ("\n\nYou have skills for this work: `list_skills` says what each is for, `load_skill` gives "
                  "one's instructions. Load a skill before the step it covers.") if self.role.skills else ""
        return system_prompt(self.role, ctx) + skills

    def _record_usage(self, ctx: AgentContext, turn: Turn) -> None:
        price_in, price_out = self.options.price_per_mtok
        ctx.ledger.record_usage(ctx.name, self.options.model, turn.input_tokens, turn.output_tokens,
                                (turn.input_tokens * price_in + turn.output_tokens * price_out) / 1e6)

    def _check_caps(self, ctx: AgentContext) -> None:
        used = ctx.ledger.usage(ctx.name)
        if self.options.max_tokens is not None and used.input_tokens + used.output_tokens >= self.options.max_tokens:
            raise AgentError(f"over its token cap ({self.options.max_tokens})")
        if self.options.max_cost_usd is not None and used.cost_usd >= self.options.max_cost_usd:
            raise AgentError(f"over its cost cap (${self.options.max_cost_usd:g})")


def system_prompt(role: RoleSpec, ctx: AgentContext) -> str:
    """The role's prompt files, then the task's program.md if it has one: prompts are data, not code."""
    parts = []
    for path in role.prompt:
        try:
            parts.append(ctx.read(path))
        except FileNotFoundError:
            raise AgentError(f"role {role.name}: prompt file {path} is not in the program") from None
    if ctx.worktree is not None and (ctx.worktree / "program.md").is_file():
        parts.append(ctx.read("program.md"))
    return "\n\n".join(parts) or f"You are a researcher improving {ctx.task.metric.name}."


def briefing(ctx: AgentContext) -> str:
    """What the agent is told at the start of each proposal: bounded, built from the ledger."""
    task = ctx.task
    lines = [f"You are {ctx.name}. Task {task.name}: {task.description}",
             f"Goal: {task.metric.direction} {task.metric.name}. Training budget: {task.budget_seconds:g} s.",
             f"Editable: {', '.join(task.editable)}. Read-only: {', '.join(task.protected)}.",
             "", "Results so far:", history_summary(ctx)]
    inbox = ctx.inbox()[-8:]
    if inbox:
        lines += ["", "Latest messages:"] + [f"- #{m.id} {m.sender} ({m.kind}): {m.body[:500]}"
                                             for m in inbox]
    agents = ", ".join(sorted(ctx.post.worktrees)) if ctx.post is not None else ctx.name
    if ctx.role is not None and not ctx.role.submits:
        idle = ctx.idle() if ctx.idle is not None else []
        lines += ["", f"The agents: {agents}. Assign well-scoped experiments with `assign`, merge"
                  " what truly beats the program's best, then call done."]
        if idle:
            lines.append(f"Waiting for an assignment: {', '.join(idle)}.")
    elif ctx.assignment is not None:
        lines += ["", f"Your assignment (#{ctx.assignment.id} from {ctx.assignment.sender}):",
                  ctx.assignment.body, "", "Implement exactly this, then call submit."]
    else:
        lines += ["", "Make one well-scoped change, then call submit with a one-line description and your hypothesis."]
    return "\n".join(lines)


def api_key(role: RoleSpec, options: LLMOptions, default_env: str, backend: str) -> str:
    """The role's API key from the environment; a clear error naming the role when it is missing."""
    import os

    env = options.api_key_env or default_env
    key = os.environ.get(env)
    if not key and options.base_url is None:
        raise AgentError(f"role {role.name}: the {backend} backend needs ${env} (or a base_url of a local server)")
    return key or "not-needed"


def probe_provider(role: RoleSpec, where: str, sdk: Any, call: Any, missing: Any) -> str:
    """Run a backend's probe `call()` (what it checked) with the provider SDK `sdk`'s errors said in one line
    each; a 404 is `missing()`'s answer (a server without the route, or a model it does not know)."""
    try:
        return call()
    except sdk.NotFoundError:
        return missing()
    except sdk.AuthenticationError as err:
        raise AgentError(f"role {role.name}: {where} refused the API key: {err.message}") from None
    except sdk.APIConnectionError as err:
        raise AgentError(f"role {role.name}: cannot reach {where}: {err.__cause__ or err}") from None
    except sdk.APIError as err:
        raise AgentError(f"role {role.name}: {where} failed: {type(err).__name__}: {err}") from None
