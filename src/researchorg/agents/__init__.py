"""Agent backends behind one protocol (base.py), found by name in a registry.

`make_agent` builds the agent of a role from its `backend` name. A library
user (or a test) adds a backend with `register_backend(name, factory)`, where
`factory(role, ctx, index)` returns an object with `propose` and `observe`.
"""

from __future__ import annotations

from collections.abc import Callable

from researchorg.agents.base import Agent, AgentContext, Proposal
from researchorg.config import RoleSpec

AgentFactory = Callable[[RoleSpec, AgentContext, int], Agent]


def _tuner(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.tuner import TunerAgent  # optuna loads only when a tuner is used

    return TunerAgent(ctx, sampler="tpe" if role.backend == "tuner" else "random", seed=role.seed + index,
                      think_seconds=role.think_seconds)


def _openai(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.openai_agent import OpenAIAgent

    return OpenAIAgent(role, ctx)


def _anthropic(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.anthropic_agent import AnthropicAgent

    return AnthropicAgent(role, ctx)


def _coding_cli(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.cli_agent import CodingCLIAgent

    return CodingCLIAgent(role, ctx)


def _simulated(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.simulated import SimulatedAgent

    return SimulatedAgent(ctx, role.idea_quality, seed=role.seed + index, think_seconds=role.think_seconds)


def _interactive(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.interactive import InteractiveAgent

    return InteractiveAgent()


_BACKENDS: dict[str, AgentFactory] = {"tuner": _tuner, "random": _tuner, "openai": _openai, "anthropic": _anthropic,
                                      "claude-code": _coding_cli, "codex": _coding_cli, "interactive": _interactive,
                                      "simulated": _simulated}


def register_backend(name: str, factory: AgentFactory) -> None:
    _BACKENDS[name] = factory


def backends() -> list[str]:
    return sorted(_BACKENDS)


def make_agent(role: RoleSpec, ctx: AgentContext, index: int = 0) -> Agent:
    """The agent for `role`; `index` separates the seeds of agents that share a role."""
    return _BACKENDS[role.backend](role, ctx, index)


__all__ = ["Agent", "AgentContext", "Proposal", "make_agent", "register_backend", "backends"]
