"""The ledger's schema: one table per record (records.py), for the SQL store (sql.py).

Columns added since a program was created are added to its database when it is
opened (with their server defaults), so an older program opens as it was.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("task", sa.String, nullable=False),
    sa.Column("metric", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("baseline_commit", sa.String, nullable=False),
    sa.Column("protected_hashes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("backend", sa.String, nullable=False),
    sa.Column("branch", sa.String, nullable=False),
    sa.Column("worktree", sa.String, nullable=False),
    sa.Column("head_commit", sa.String, nullable=False),  # where the branch stands after the last decision
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("program_id", "name"),
)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # also the experiment number shown to people
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("agent_id", sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("parent_commit", sa.String, nullable=False),
    sa.Column("commit", sa.String, nullable=False),
    sa.Column("diff", sa.Text, nullable=False, default=""),
    sa.Column("description", sa.String, nullable=False, default=""),
    sa.Column("hypothesis", sa.Text, nullable=False, default=""),
    sa.Column("proposal", sa.JSON, nullable=False, default=dict),  # agent-specific (e.g. the tuner's params)
    sa.Column("status", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),  # why crash / timeout / invalid / interrupted
    sa.Column("metric", sa.Float),
    sa.Column("summary", sa.JSON, nullable=False, default=dict),  # every `key: value` of the run's summary
    sa.Column("peak_mem_mb", sa.Float),
    sa.Column("training_seconds", sa.Float),
    sa.Column("total_seconds", sa.Float),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("slot", sa.String, nullable=False, default=""),
    sa.Column("hardware", sa.String, nullable=False, default=""),
    sa.Column("pid", sa.Integer),  # process group of the run while it is running
    sa.Column("log_path", sa.String, nullable=False, default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("kind", sa.String, nullable=False, default="proposal", server_default="proposal"),
    sa.Column("rerun_of", sa.Integer),  # the proposal a re-run or verification run measures again
    sa.Column("tree", sa.String, nullable=False, default="", server_default=""),  # the code run: its git tree
    # the fraction of the task's budget the run trained for (a screening run's is less than 1)
    sa.Column("fidelity", sa.Float, nullable=False, default=1.0, server_default="1.0"),
)

noise = sa.Table(  # the noise floor: the baseline run with K seeds, per hardware class
    "noise",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("hardware", sa.String, nullable=False),
    sa.Column("commit", sa.String, nullable=False),
    sa.Column("runs", sa.JSON, nullable=False),  # experiment ids
    sa.Column("mean", sa.Float, nullable=False),
    sa.Column("sigma", sa.Float, nullable=False),  # sample standard deviation of one run
    sa.Column("sigma_low", sa.Float, nullable=False),  # 95% interval of sigma (chi-square)
    sa.Column("sigma_high", sa.Float, nullable=False),
)

verifications = sa.Table(  # fresh-seed re-runs of a candidate before it may merge
    "verifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("experiment_id", sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("runs", sa.JSON, nullable=False),  # experiment ids of the fresh runs
    sa.Column("mean", sa.Float),  # of the fresh runs; NULL when none succeeded
    sa.Column("claimed", sa.Float, nullable=False),  # what the candidate's decision measured
    sa.Column("incumbent", sa.Float),  # what it had to beat
    sa.Column("reproduced", sa.Boolean, nullable=False),
)

merges = sa.Table(
    "merges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("experiment_id", sa.ForeignKey("experiments.id"), nullable=False),  # the run that earned it
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("by", sa.String, nullable=False),  # the role or process that merged
    sa.Column("how", sa.String, nullable=False),  # fast-forward | re-run
    sa.Column("before", sa.String, nullable=False),  # program branch before and after
    sa.Column("after", sa.String, nullable=False),
    sa.Column("metric", sa.Float, nullable=False),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
)

submissions = sa.Table(  # experiments people submit from an interactive pane (`researchorg submit`)
    "submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("description", sa.String, nullable=False),
    sa.Column("hypothesis", sa.Text, nullable=False, default=""),
    sa.Column("taken", sa.Boolean, nullable=False, default=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("sender", sa.String, nullable=False),  # an agent, a process (e.g. "standup") or "lab"
    sa.Column("recipient", sa.String),  # an agent; NULL: everyone
    sa.Column("kind", sa.String, nullable=False),  # assignment | report | note | digest | merge
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("experiment_id", sa.Integer),  # the experiment it is about, if any
    sa.Column("data", sa.JSON, nullable=False, default=dict, server_default="{}"),  # structured content
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("program_id", sa.ForeignKey("programs.id"), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("data", sa.JSON, nullable=False, default=dict),
)
