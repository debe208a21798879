"""The ledger's records: typed, frozen rows that every store returns (never dicts).

One record per table of the schema (schema.py). They carry data only; what a
version of the code scores, or whether a run was better, is decided by the
statistics (researchorg.stats), never here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("running", "keep", "discard", "measured", "crash", "timeout", "invalid", "interrupted")
FINISHED_OK = ("keep", "discard", "measured")  # statuses that carry a valid metric
# Why a run was made: an agent's proposal; the noise floor (the baseline with other seeds); a re-run of a
# borderline candidate (sequential test); a fresh run of the incumbent it is compared with (when the
# incumbent has fewer runs); a verification before merge; a merge re-run; an ablation.
# Only proposals (and merge re-runs) are decided (keep/discard); the other runs end `measured` and serve as evidence.
KINDS = ("proposal", "noise", "rerun", "incumbent", "verify", "merge", "ablation")


@dataclass(frozen=True)
class Program:
    id: int
    name: str
    task: str
    metric: str
    direction: str
    baseline_commit: str
    protected_hashes: dict[str, str]
    created_at: float


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    role: str
    backend: str
    branch: str  # empty for agents without a branch (the lab's own runs, simulated agents)
    worktree: str
    head_commit: str  # where the agent's branch stands after its last decision
    created_at: float


@dataclass(frozen=True)
class Experiment:
    """One run: what was tried, on which code, and how it ended."""

    id: int
    agent: str
    parent_commit: str
    commit: str
    status: str
    description: str = ""
    hypothesis: str = ""
    diff: str = ""
    proposal: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    peak_mem_mb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    seed: int = 0
    slot: str = ""
    hardware: str = ""
    pid: int | None = None
    log_path: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    kind: str = "proposal"
    rerun_of: int | None = None
    tree: str = ""  # the code that ran: its git tree (the simulated world's name of a set of ideas)
    fidelity: float = 1.0  # the fraction of the task's budget it trained for (a screening run: less than 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ran_until(self) -> float:
        """When the run left its slot: its start and its slot time (a proposal is recorded only once decided,
        which may take re-runs)."""
        held = self.summary.get("slot_seconds")
        return self.started_at + held if isinstance(held, int | float) else (self.ended_at or self.started_at)


@dataclass(frozen=True)
class Merge:
    id: int
    at: float
    experiment_id: int  # the run that earned it
    agent: str
    by: str  # the role or process that merged
    how: str  # fast-forward | merge of the tested tree | re-run
    before: str  # the program branch before and after
    after: str
    metric: float


@dataclass(frozen=True)
class NoiseFloor:
    """The baseline run with K seeds on one hardware class."""

    id: int
    at: float
    hardware: str
    commit: str
    runs: list[int]  # experiment ids
    mean: float
    sigma: float  # sample standard deviation of one run
    sigma_low: float  # 95% interval of sigma (chi-square)
    sigma_high: float


@dataclass(frozen=True)
class Verification:
    """Fresh-seed re-runs of a candidate before it may merge."""

    id: int
    at: float
    experiment_id: int
    agent: str
    role: str
    runs: list[int]
    mean: float | None  # of the fresh runs; None when none succeeded
    claimed: float  # what the candidate's decision measured
    incumbent: float | None  # what it had to beat
    reproduced: bool


@dataclass(frozen=True)
class Message:
    id: int
    at: float
    sender: str  # an agent, a process (e.g. "standup") or "lab"
    recipient: str | None  # an agent; None: everyone
    kind: str  # assignment | report | note | digest | merge | verify
    body: str
    experiment_id: int | None = None  # the experiment it is about, if any
    data: dict[str, Any] = field(default_factory=dict)  # structured content (e.g. the experiments a digest lists)


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of LLM calls, summed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


@dataclass(frozen=True)
class Submission:
    """An experiment a person submitted from an interactive pane (`researchorg submit`)."""

    id: int
    at: float
    agent: str
    description: str
    hypothesis: str = ""
