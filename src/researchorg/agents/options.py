"""The options of each backend family: the keys of a role beyond what every role has, checked by its backend.

A role in org.toml is the org's common keys (name, count, backend, seed,
priority, prompt, ...; config.RoleSpec) plus the options of its backend,
which the backend's model below validates: a key no model knows is an error
that names the file, the role and the key, before anything runs.
"""

from __future__ import annotations

from pydantic import Field

from researchorg.config import Strict


class NoOptions(Strict):
    """Backends with no options of their own (tuner, random)."""


class LLMOptions(Strict):
    """openai (any OpenAI-compatible server: vLLM, Ollama, llama.cpp) and anthropic."""

    model: str  # the model to call
    tools: list[str] | None = None  # the tools the role may use (see agents/tools.py); None: all
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 for vLLM, :11434/v1 for Ollama
    api_key_env: str | None = None  # the environment variable holding the key (default: the provider's)
    max_turns: int = Field(default=30, ge=1)  # model calls per proposal before the agent is paused
    max_retries: int = Field(default=4, ge=0)  # on rate limits and server errors, with backoff
    stream: bool = False  # stream replies (server-sent events) instead of waiting for the whole reply
    max_tokens: int | None = Field(default=None, ge=1)  # cap on the agent's input + output tokens
    max_cost_usd: float | None = Field(default=None, gt=0)  # cap on the agent's spend
    price_per_mtok: tuple[float, float] = (0.0, 0.0)  # USD per million input and output tokens


class CodingCLIOptions(Strict):
    """claude-code and codex."""

    model: str | None = None
    tools: list[str] | None = None  # the CLI's tools the role may use
    command: str | None = None  # the executable (default: claude / codex on PATH)
    cli_timeout: float = Field(default=900, gt=0)  # seconds before a CLI run is killed
    # the CLI runs in the kernel sandbox (harness/sandbox.py): its worktree and a home of its own writable, the
    # system read-only, the network open. These paths in your home (its settings and logins) are copied into
    # its own home once; paths elsewhere are shared as they are
    sandbox_paths: list[str] | None = None  # default: claude-code ~/.claude, ~/.claude.json; codex ~/.codex


class InteractiveOptions(Strict):
    command: str | None = None  # the coding CLI the grid opens in the agent's pane (default: claude)


class SimulatedOptions(Strict):
    idea_quality: float = Field(default=0.5, ge=0, le=1)  # the chance that an idea truly helps
