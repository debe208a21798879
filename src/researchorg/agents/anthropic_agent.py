"""The `anthropic` backend: the Messages API with tools through the official Anthropic SDK.

The loop, caps and accounting are in llm.py. `base_url` points the SDK at
another server speaking the Messages API.
"""

from __future__ import annotations

from typing import Any

from researchorg.agents.base import AgentContext
from researchorg.agents.llm import LLMAgent, Turn, api_key, probe_provider
from researchorg.config import RoleSpec
from researchorg.errors import AgentError

MAX_OUTPUT_TOKENS = 4096


class AnthropicAgent(LLMAgent):
    backend = "anthropic"

    def __init__(self, role: RoleSpec, ctx: AgentContext):
        import anthropic  # the SDK loads only when an org uses it

        super().__init__(role, ctx)
        key = api_key(role, self.options, "ANTHROPIC_API_KEY", self.backend)
        self.client = anthropic.Anthropic(api_key=key, base_url=self.options.base_url,
                                          max_retries=self.options.max_retries, timeout=120)
        self.errors = (anthropic.APIError,)

    def _call(self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Turn:
        request = {"model": self.options.model, "max_tokens": MAX_OUTPUT_TOKENS, "system": system, "messages": messages,
                   "tools": [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                             for t in tools]}
        try:
            if self.options.stream:
                with self.client.messages.stream(**request) as stream:
                    response = stream.get_final_message()
            else:
                response = self.client.messages.create(**request)
        except self.errors as err:
            raise AgentError(f"{type(err).__name__} from the provider: {err}") from None
        content = [block.model_dump(exclude_none=True) for block in response.content]
        calls = [(b["id"], b["name"], b.get("input") or {}) for b in content if b["type"] == "tool_use"]
        return Turn({"role": "assistant", "content": content}, calls,
                    response.usage.input_tokens, response.usage.output_tokens)

    def _tool_results(self, results: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": id_, "content": text}
                                             for id_, text in results]}]


def probe(role: RoleSpec) -> str:
    """Whether the server answers, accepts the key and knows the model (GET /v1/models/{model})."""
    import anthropic

    from researchorg.agents.options import LLMOptions

    options = LLMOptions.model_validate(role.options)
    where = options.base_url or "api.anthropic.com"
    client = anthropic.Anthropic(api_key=api_key(role, options, "ANTHROPIC_API_KEY", "anthropic"),
                                 base_url=options.base_url, max_retries=1, timeout=20)

    def known() -> str:
        client.models.retrieve(options.model)
        return f"{where} knows {options.model}"

    def unknown() -> str:
        raise AgentError(f"role {role.name}: {where} does not know model {options.model!r}")
    return probe_provider(role, where, anthropic, known, unknown)
