"""Agent backends behind one protocol (base.py), found by name in a registry, each with its options model.

`make_agent` builds the agent of a role from its `backend` name. A library
user (or a test) adds a backend with `register_backend(name, factory,
options)`, where `factory(role, ctx, index)` returns an object with `propose`
and `observe`, and `options` is the pydantic model of the role keys the
backend takes (options.py). `check_org` checks every role's backend and
options, so a bad org is one clear error before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from researchorg.agents.base import Agent, AgentContext, Proposal
from researchorg.agents.options import (
    CodingCLIOptions,
    InteractiveOptions,
    LLMOptions,
    NoOptions,
    SimulatedOptions,
)
from researchorg.config import OrgSpec, RoleSpec, validate
from researchorg.errors import ConfigError

AgentFactory = Callable[[RoleSpec, AgentContext, int], Agent]


def _tuner(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.tuner import TunerAgent  # optuna loads only when a tuner is used

    return TunerAgent(ctx, sampler="tpe" if role.backend == "tuner" else "random", seed=role.seed + index)


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

    return SimulatedAgent(ctx, options_of(role).idea_quality, seed=role.seed + index)


def _interactive(role: RoleSpec, ctx: AgentContext, index: int) -> Agent:
    from researchorg.agents.interactive import InteractiveAgent

    return InteractiveAgent()


@dataclass(frozen=True)
class Backend:
    factory: AgentFactory
    options: type[BaseModel] = NoOptions


_BACKENDS: dict[str, Backend] = {
    "tuner": Backend(_tuner), "random": Backend(_tuner), "openai": Backend(_openai, LLMOptions),
    "anthropic": Backend(_anthropic, LLMOptions), "claude-code": Backend(_coding_cli, CodingCLIOptions),
    "codex": Backend(_coding_cli, CodingCLIOptions), "interactive": Backend(_interactive, InteractiveOptions),
    "simulated": Backend(_simulated, SimulatedOptions)}


def register_backend(name: str, factory: AgentFactory, options: type[BaseModel] = NoOptions) -> None:
    _BACKENDS[name] = Backend(factory, options)


def backends() -> list[str]:
    return sorted(_BACKENDS)


def options_of(role: RoleSpec, where: Path | str = "org.toml", index: int | None = None) -> Any:
    """The role's backend options, validated by the backend's model; a ConfigError naming the key otherwise."""
    at = ("roles", index if index is not None else role.name)
    if role.backend not in _BACKENDS:
        raise ConfigError(f"{where}: {'.'.join(map(str, at))}.backend: unknown backend {role.backend!r}; "
                          f"known: {', '.join(backends())}")
    return validate(_BACKENDS[role.backend].options, role.options, where, at)


def check_org(org: OrgSpec, where: Path | str) -> None:
    """Every role's backend exists and takes its options."""
    for index, role in enumerate(org.roles):
        options_of(role, where, index)


def make_agent(role: RoleSpec, ctx: AgentContext, index: int = 0) -> Agent:
    """The agent for `role`; `index` separates the seeds of agents that share a role."""
    options_of(role)
    return _BACKENDS[role.backend].factory(role, ctx, index)


__all__ = ["Agent", "AgentContext", "Proposal", "make_agent", "register_backend", "backends", "check_org",
           "options_of"]
