"""The `openai` backend: Chat Completions with tools through the official OpenAI SDK.

`base_url` reaches any OpenAI-compatible server (vLLM, Ollama, llama.cpp), and
then no API key is needed. The loop, caps and accounting are in llm.py.
"""

from __future__ import annotations

from typing import Any

from researchorg.agents.base import AgentContext
from researchorg.agents.llm import LLMAgent, Turn, api_key, probe_provider
from researchorg.config import RoleSpec
from researchorg.errors import AgentError


class OpenAIAgent(LLMAgent):
    backend = "openai"

    def __init__(self, role: RoleSpec, ctx: AgentContext):
        import openai  # the SDK loads only when an org uses it

        super().__init__(role, ctx)
        key = api_key(role, self.options, "OPENAI_API_KEY", self.backend)
        self.client = openai.OpenAI(api_key=key, base_url=self.options.base_url,
                                    max_retries=self.options.max_retries, timeout=120)
        self.errors = (openai.APIError,)

    def _call(self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        request = {"model": self.options.model, "messages": [{"role": "system", "content": system}, *messages],
                   "tools": [{"type": "function", "function": spec} for spec in tools]}
        try:
            if self.options.stream:
                return _streamed_turn(self.client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}))
            response = self.client.chat.completions.create(**request)
        except self.errors as err:
            raise AgentError(f"{type(err).__name__} from the provider: {err}") from None
        message = response.choices[0].message
        calls = message.tool_calls or []
        assistant = {"role": "assistant", "content": message.content or ""}
        if calls:
            assistant["tool_calls"] = [c.model_dump() for c in calls]
        usage = response.usage
        return Turn(assistant, [(c.id, c.function.name, c.function.arguments) for c in calls],
                    usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    def _tool_results(self, results: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"role": "tool", "tool_call_id": id_, "content": text} for id_, text in results]


def probe(role: RoleSpec) -> str:
    """Whether the server answers, accepts the key and serves the model (GET /models, which OpenAI, vLLM, Ollama
    and llama.cpp all serve); a server without that route is taken at its word."""
    import openai

    from researchorg.agents.options import LLMOptions

    options = LLMOptions.model_validate(role.options)
    where = options.base_url or "api.openai.com"
    client = openai.OpenAI(api_key=api_key(role, options, "OPENAI_API_KEY", "openai"), base_url=options.base_url,
                           max_retries=1, timeout=20)

    def served() -> str:
        names = [model.id for model in client.models.list()]
        if names and options.model not in names:
            raise AgentError(f"role {role.name}: {where} does not serve model {options.model!r} "
                             f"(it serves {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
        return f"{where} serves {options.model}"
    return probe_provider(role, where, openai, served, lambda: f"{where} answers (it lists no models)")


def _streamed_turn(chunks: Any) -> Turn:
    """Assemble a streamed reply: text pieces, and tool calls whose arguments arrive in fragments."""
    text, calls, usage = [], {}, None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            for fragment in choice.delta.tool_calls or []:
                call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = fragment.id or call["id"]
                if fragment.function is not None:
                    call["name"] += fragment.function.name or ""
                    call["arguments"] += fragment.function.arguments or ""
    ordered = [calls[i] for i in sorted(calls)]
    assistant: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if ordered:
        assistant["tool_calls"] = [{"id": c["id"], "type": "function",
                                    "function": {"name": c["name"], "arguments": c["arguments"]}} for c in ordered]
    return Turn(assistant, [(c["id"], c["name"], c["arguments"]) for c in ordered],
                usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
