"""Agent backends behind one protocol (base.py). `make_agent` builds one by backend name."""

from researchorg.agents.base import Agent, AgentContext, Proposal
from researchorg.config import RoleSpec
from researchorg.errors import AgentError

BACKENDS = ("tuner", "random")


def make_agent(role: RoleSpec, ctx: AgentContext, index: int = 0) -> Agent:
    """An agent for `role`; `index` separates the seeds of agents that share a role."""
    if role.backend in ("tuner", "random"):
        from researchorg.agents.tuner import TunerAgent

        return TunerAgent(ctx, sampler="tpe" if role.backend == "tuner" else "random", seed=role.seed + index)
    raise AgentError(f"role {role.name}: unknown backend {role.backend!r} (known: {', '.join(BACKENDS)})")


__all__ = ["Agent", "AgentContext", "Proposal", "make_agent", "BACKENDS"]
