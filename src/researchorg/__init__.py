"""researchorg: program a research organization of AI agents, run it on a task, and measure it.

The nouns: a task (what is researched: `load_task`), a program (the git repository where an
organization works on a task: `Program`), an org (roles, processes, rigor: `load_org`), an agent
(proposes changes: `Agent`, `Proposal`, `register_backend`), the engine that runs the org in a world
(`Runtime` on a `Program`, or on a `SimWorld` in virtual time, with `Limits`), the ledger where every
experiment is recorded (`Ledger`, `SqlLedger`, `MemoryLedger`), and the benchmark of organizations
(`load_bench`, `run_bench`).
"""

__version__ = "0.1.0"

from researchorg.agents import Agent, AgentContext, Proposal, register_backend  # noqa: E402
from researchorg.bench.measures import summarize as summarize_bench  # noqa: E402
from researchorg.bench.run import run_bench  # noqa: E402
from researchorg.bench.spec import load_bench  # noqa: E402
from researchorg.config import OrgSpec, RoleSpec, load_org  # noqa: E402
from researchorg.engine.runtime import Limits, RunReport, Runtime  # noqa: E402
from researchorg.errors import AgentError, ConfigError, LabError, ResearchOrgError  # noqa: E402
from researchorg.harness.landscape import Landscape  # noqa: E402
from researchorg.ledger import Experiment, Ledger, MemoryLedger, SqlLedger  # noqa: E402
from researchorg.task import MetricSpec, TaskSpec, load_task  # noqa: E402
from researchorg.world.program import Program  # noqa: E402
from researchorg.world.real import GitWorld  # noqa: E402
from researchorg.world.simulated import SimWorld  # noqa: E402
from researchorg.world.slots import Slot, detect_slots  # noqa: E402

__all__ = ["Agent", "AgentContext", "AgentError", "ConfigError", "Experiment", "GitWorld", "LabError", "Landscape",
           "Ledger", "Limits", "MemoryLedger", "MetricSpec", "OrgSpec", "Program", "Proposal", "ResearchOrgError",
           "RoleSpec", "RunReport", "Runtime", "SimWorld", "Slot", "SqlLedger", "TaskSpec", "detect_slots",
           "load_bench", "load_org", "load_task", "register_backend", "run_bench", "summarize_bench", "__version__"]
