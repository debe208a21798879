"""The `openai` backend: a tool-calling loop through the official OpenAI SDK (Chat Completions).

`base_url` reaches any OpenAI-compatible server (vLLM, Ollama, llama.cpp). A
proposal is one short conversation: the role's prompt files and the task's
program.md as the system message, then a compact, bounded summary of the
results and messages from the ledger (never an ever-growing chat over the
night), then tool calls until the model calls `submit`. The SDK retries rate
limits and server errors with backoff (`max_retries`). Tokens and cost go to
the ledger per call; a role over its token or money cap stops with a reason.
"""

from __future__ import annotations

import os
from typing import Any

from researchorg.agents.base import AgentContext, Proposal
from researchorg.agents.tools import Toolbox, history_summary
from researchorg.config import RoleSpec
from researchorg.errors import AgentError
from researchorg.ledger import Experiment

NUDGE = "Use the tools to change the editable files, then call `submit`. Do not stop before submitting."


class OpenAIAgent:
    def __init__(self, role: RoleSpec, ctx: AgentContext):
        import openai  # the SDK loads only when an org uses it

        key_env = role.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(key_env)
        if not key and role.base_url is None:
            raise AgentError(f"role {role.name}: the openai backend needs ${key_env} (or a base_url of a local "
                             "OpenAI-compatible server)")
        if not role.model:
            raise AgentError(f"role {role.name}: the openai backend needs `model`")
        self.role = role
        self.client = openai.OpenAI(api_key=key or "not-needed", base_url=role.base_url,
                                    max_retries=role.max_retries, timeout=120)
        self.errors = (openai.APIError,)

    def propose(self, ctx: AgentContext) -> Proposal | None:
        self._check_caps(ctx)
        toolbox = Toolbox(ctx, self.role.tools)
        tools = [{"type": "function", "function": spec} for spec in toolbox.schemas()]
        messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(self.role, ctx)},
                                          {"role": "user", "content": briefing(ctx)}]
        for _ in range(self.role.max_turns):
            try:
                response = self.client.chat.completions.create(model=self.role.model, messages=messages, tools=tools)
            except self.errors as err:
                raise AgentError(f"{type(err).__name__} from the provider: {err}") from None
            self._record_usage(ctx, response)
            message = response.choices[0].message
            calls = message.tool_calls or []
            messages.append({"role": "assistant", "content": message.content or "",
                             **({"tool_calls": [c.model_dump() for c in calls]} if calls else {})})
            if not calls:
                messages.append({"role": "user", "content": NUDGE})
                continue
            for call in calls:
                result = toolbox.call(call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if toolbox.submission is not None:
                return Proposal(toolbox.submission.description, toolbox.submission.hypothesis,
                                data={"backend": "openai", "model": self.role.model, "tools": toolbox.calls})
        raise AgentError(f"no submission after {self.role.max_turns} model calls")

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        """Nothing to keep in memory: the next briefing is built from the ledger."""

    def _record_usage(self, ctx: AgentContext, response: Any) -> None:
        usage = getattr(response, "usage", None)
        prompt, completion = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)
        price_in, price_out = self.role.price_per_mtok
        ctx.ledger.record_usage(ctx.name, self.role.model, prompt, completion,
                                (prompt * price_in + completion * price_out) / 1e6)

    def _check_caps(self, ctx: AgentContext) -> None:
        used = ctx.ledger.usage(ctx.name)
        if self.role.max_tokens is not None and used["input_tokens"] + used["output_tokens"] >= self.role.max_tokens:
            raise AgentError(f"over its token cap ({self.role.max_tokens})")
        if self.role.max_cost_usd is not None and used["cost_usd"] >= self.role.max_cost_usd:
            raise AgentError(f"over its cost cap (${self.role.max_cost_usd:g})")


def system_prompt(role: RoleSpec, ctx: AgentContext) -> str:
    """The role's prompt files, then the task's program.md if it has one: prompts are data, not code."""
    parts = []
    for path in role.prompt:
        try:
            parts.append(ctx.read(path))
        except FileNotFoundError:
            raise AgentError(f"role {role.name}: prompt file {path} is not in the program") from None
    if (ctx.worktree / "program.md").is_file():
        parts.append(ctx.read("program.md"))
    return "\n\n".join(parts) or f"You are a researcher improving {ctx.task.metric.name}."


def briefing(ctx: AgentContext) -> str:
    """What the agent is told at the start of each proposal: bounded, built from the ledger."""
    task = ctx.task
    lines = [f"You are {ctx.name}. Task {task.name}: {task.description}",
             f"Goal: {task.metric.direction} {task.metric.name}. Training budget: {task.budget_seconds:g} s.",
             f"Editable: {', '.join(task.editable)}. Read-only: {', '.join(task.protected)}.",
             "", "Results so far:", history_summary(ctx)]
    inbox = ctx.inbox()[-5:]
    if inbox:
        lines += ["", "Latest messages:"] + [f"- {m['sender']} ({m['kind']}): {m['body'][:500]}" for m in inbox]
    lines += ["", "Make one well-scoped change, then call submit with a one-line description and your hypothesis."]
    return "\n".join(lines)
