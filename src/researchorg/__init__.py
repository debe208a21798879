"""researchorg: program a research organization of AI agents, run it on a task, and measure it.

The nouns: a task (what is researched: `load_task`), a program (the git repository where an
organization works on a task: `Program`), an org (roles, processes, rigor: `load_org`), an agent
(proposes changes: `Agent`, `Proposal`, `register_backend`), the engine that runs the org in a world
(`Runtime` on a `Program`, or on a `SimWorld` in virtual time, with `Limits`), the ledger where every
experiment is recorded (`Ledger`, `SqlLedger`, `MemoryLedger`), and the benchmark of organizations
(`load_bench`, `run_bench`).
"""

__version__ = "0.1.0"

import importlib  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # what type checkers and editors see; at run time names load on first use (below)
    from researchorg.agents import Agent, AgentContext, Proposal, register_backend
    from researchorg.bench.measures import summarize as summarize_bench
    from researchorg.bench.run import run_bench
    from researchorg.bench.spec import load_bench
    from researchorg.config import OrgSpec, RoleSpec, load_org
    from researchorg.engine.runtime import Limits, RunReport, Runtime
    from researchorg.errors import AgentError, ConfigError, LabError, ResearchOrgError
    from researchorg.harness.landscape import Landscape
    from researchorg.ledger import Experiment, Ledger, MemoryLedger, SqlLedger
    from researchorg.task import MetricSpec, TaskSpec, load_task
    from researchorg.world.program import Program
    from researchorg.world.real import GitWorld
    from researchorg.world.simulated import SimWorld
    from researchorg.world.slots import Slot, detect_slots

# Names are imported on first use (PEP 562), so that `import researchorg.harness...` in a task's harness and in
# every training run's guest costs nothing beyond what it uses.
_EXPORTS = {
    "Agent": "researchorg.agents", "AgentContext": "researchorg.agents", "Proposal": "researchorg.agents",
    "register_backend": "researchorg.agents", "summarize_bench": ("researchorg.bench.measures", "summarize"),
    "run_bench": "researchorg.bench.run", "load_bench": "researchorg.bench.spec", "OrgSpec": "researchorg.config",
    "RoleSpec": "researchorg.config", "load_org": "researchorg.config", "Limits": "researchorg.engine.runtime",
    "RunReport": "researchorg.engine.runtime", "Runtime": "researchorg.engine.runtime",
    "AgentError": "researchorg.errors", "ConfigError": "researchorg.errors", "LabError": "researchorg.errors",
    "ResearchOrgError": "researchorg.errors", "Landscape": "researchorg.harness.landscape",
    "Experiment": "researchorg.ledger", "Ledger": "researchorg.ledger", "MemoryLedger": "researchorg.ledger",
    "SqlLedger": "researchorg.ledger", "MetricSpec": "researchorg.task", "TaskSpec": "researchorg.task",
    "load_task": "researchorg.task", "Program": "researchorg.world.program", "GitWorld": "researchorg.world.real",
    "SimWorld": "researchorg.world.simulated", "Slot": "researchorg.world.slots",
    "detect_slots": "researchorg.world.slots",
}


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'researchorg' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["Agent", "AgentContext", "AgentError", "ConfigError", "Experiment", "GitWorld", "LabError", "Landscape",
           "Ledger", "Limits", "MemoryLedger", "MetricSpec", "OrgSpec", "Program", "Proposal", "ResearchOrgError",
           "RoleSpec", "RunReport", "Runtime", "SimWorld", "Slot", "SqlLedger", "TaskSpec", "detect_slots",
           "load_bench", "load_org", "load_task", "register_backend", "run_bench", "summarize_bench", "__version__"]
