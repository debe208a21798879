"""Agent backends behind one protocol (base.py), found by name in a registry, each with its options model.

`make_agent` builds the agent of a role from its `backend` name. A library
user (or a test) adds a backend with `register_backend(name, factory,
options, probe)`, where `factory(role, ctx, index)` returns an object with
`propose` and `observe`, `options` is the pydantic model of the role keys the
backend takes (options.py), and `probe(role)` checks that what the backend
talks to answers (the server is up, the key is accepted, the model is known,
the CLI runs) and says what it checked. `check_org` checks every role's
backend and options (and, given the task, that a tuner has knobs to tune), so
a bad org is one clear error before anything runs; `probe_org` asks every
backend's probe, which `run` does before any compute is spent and `check`
does for orgs of LLMs and coding CLIs.
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
from researchorg.agents.tools import check_tools
from researchorg.config import OrgSpec, RoleSpec, org_skills, validate
from researchorg.errors import ConfigError
from researchorg.task.spec import TaskSpec

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


def _probe_openai(role: RoleSpec) -> str:
    from researchorg.agents.openai_agent import probe

    return probe(role)


def _probe_anthropic(role: RoleSpec) -> str:
    from researchorg.agents.anthropic_agent import probe

    return probe(role)


def _probe_cli(role: RoleSpec) -> str:
    from researchorg.agents.cli_agent import probe

    return probe(role)


Probe = Callable[[RoleSpec], str]


@dataclass(frozen=True)
class Backend:
    factory: AgentFactory
    options: type[BaseModel] = NoOptions
    probe: Probe | None = None
    needs_knobs: bool = False


_BACKENDS: dict[str, Backend] = {
    "tuner": Backend(_tuner, needs_knobs=True), "random": Backend(_tuner, needs_knobs=True),
    "openai": Backend(_openai, LLMOptions, _probe_openai),
    "anthropic": Backend(_anthropic, LLMOptions, _probe_anthropic),
    "claude-code": Backend(_coding_cli, CodingCLIOptions, _probe_cli),
    "codex": Backend(_coding_cli, CodingCLIOptions, _probe_cli),
    "interactive": Backend(_interactive, InteractiveOptions),
    "simulated": Backend(_simulated, SimulatedOptions)}


def register_backend(name: str, factory: AgentFactory, options: type[BaseModel] = NoOptions,
                     probe: Probe | None = None) -> None:
    _BACKENDS[name] = Backend(factory, options, probe)


def backends() -> list[str]:
    return sorted(_BACKENDS)


def options_of(role: RoleSpec, where: Path | str = "org.toml", index: int | None = None) -> Any:
    """The role's backend options, validated by the backend's model; a ConfigError naming the key otherwise."""
    at = ("roles", index if index is not None else role.name)
    if role.backend not in _BACKENDS:
        raise ConfigError(f"{where}: {'.'.join(map(str, at))}.backend: unknown backend {role.backend!r}; "
                          f"known: {', '.join(backends())}")
    return validate(_BACKENDS[role.backend].options, role.options, where, at)


def check_org(org: OrgSpec, where: Path | str, task: TaskSpec | None = None) -> None:
    """Every role's backend exists and takes its options, its skills are there (SKILL.md with a name and a
    description) where `where` is the org file's path, and (given the task) it has what it needs of it."""
    if isinstance(where, Path):
        org_skills(org, where)
        check_tools(org, where)
    for index, role in enumerate(org.roles):
        options_of(role, where, index)
        if task is not None and _BACKENDS[role.backend].needs_knobs and not task.knobs:
            raise ConfigError(f"{where}: roles.{role.name}: the {role.backend} backend tunes the task's knobs, and "
                              f"task {task.name} declares none ([[knobs]] in its task.toml); use an LLM or coding-CLI "
                              "backend, or declare knobs")


def probe_org(org: OrgSpec) -> list[str]:
    """Ask every role's backend whether what it talks to answers; what each checked, or AgentError."""
    return [f"role {role.name}: {probe(role)}" for role in org.roles
            if (probe := _BACKENDS[role.backend].probe) is not None]


def make_agent(role: RoleSpec, ctx: AgentContext, index: int = 0) -> Agent:
    """The agent for `role`; `index` separates the seeds of agents that share a role."""
    options_of(role)
    return _BACKENDS[role.backend].factory(role, ctx, index)


__all__ = ["Agent", "AgentContext", "Proposal", "make_agent", "register_backend", "backends", "check_org",
           "options_of", "probe_org"]
