"""The LLM toolbox: what a model's mistakes come back as, and what it may and may not touch."""

from __future__ import annotations

import pytest

from researchorg.agents.base import AgentContext
from researchorg.agents.tools import Toolbox
from researchorg.config import RoleSpec


@pytest.fixture
def ctx(make_program):
    program = make_program(backend="tuner")
    worktree = program.ensure_agent("researcher", "researcher", "openai")
    role = RoleSpec(name="researcher", backend="tuner")
    return AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                        role=role)


def test_an_edit_that_does_not_apply_is_an_error_the_model_reads(ctx):
    box = Toolbox(ctx)
    missing = box.call("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.9", "new": "x"})
    assert missing == "error: `old` occurs 0 times in train.py; it must occur exactly once"
    assert "THRESHOLD = 0.5" in ctx.read("train.py")
    assert box.call("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.5", "new": "THRESHOLD = 0.6"}) \
        == "replaced 1 occurrence in train.py"


def test_protected_outside_and_unknown_are_refused(ctx):
    box = Toolbox(ctx)
    refused = box.call("write_file", {"path": "evaluate.py", "content": "x"})
    assert refused.startswith("error: evaluate.py is not editable")
    assert box.call("write_file", {"path": "../../escape.py", "content": "x"}) == \
        "error: ../../escape.py is outside the worktree"
    assert box.call("read_file", {"path": ".git/config"}).startswith("error:")
    assert box.call("launch_missiles", {}) == "error: tool launch_missiles is not available to this role"
    assert box.call("read_file", {"file": "train.py"}).startswith("error: wrong arguments for read_file")
    assert box.call("read_file", "[1, 2]") == "error: arguments must be a JSON object"
    assert box.call("submit", {"description": "  "}) == "error: describe the experiment in `description`"
    assert box.submission is None


def test_role_tools_limit_what_is_offered_and_allowed(ctx):
    box = Toolbox(ctx, allowed=["read_file"])
    assert {s["name"] for s in box.schemas()} == {"read_file", "submit"}
    assert box.call("write_file", {"path": "train.py", "content": ""}) == \
        "error: tool write_file is not available to this role"
    lead = Toolbox(AgentContext(**{**ctx.__dict__, "role": RoleSpec(name="chief", backend="tuner", submits=False),
                                   "idle": lambda: []}))
    names = {s["name"] for s in lead.schemas()}
    assert {"done", "assign", "read_file"} <= names and "merge" not in names  # merge needs `merges = true`
    assert not names & {"submit", "write_file", "replace_in_file"}  # a lead changes no file
    assert "assign" not in {s["name"] for s in Toolbox(ctx).schemas()}


def test_a_lead_assigns_to_one_researcher_by_name(ctx):
    from researchorg.agents.mcp_server import LedgerPost

    chief = AgentContext(**{**ctx.__dict__, "name": "chief", "worktree": None, "post": LedgerPost(
        ctx.ledger, ["chief", "researcher"]), "role": RoleSpec(name="chief", backend="tuner", submits=False)})
    assert "assign" not in {s["name"] for s in Toolbox(chief).schemas()}  # beside the org: no team to hand it out
    chief.idle = lambda: ["researcher"]  # in the org, whose team knows who waits
    box = Toolbox(chief)
    assert not {"read_file", "list_files"} & {s["name"] for s in box.schemas()}  # no worktree: no files to list
    assert box.call("assign", {"to": "everyone", "body": "x"}) == \
        "error: an assignment goes to one researcher; name it in `to`"
    assert box.call("assign", {"to": "nobody", "body": "x"}).startswith("error: no agent named 'nobody'")
    assert box.call("assign", {"to": "researcher", "body": " "}) == "error: say in `body` what the experiment is"
    assert box.call("assign", {"to": "researcher", "body": "Set THRESHOLD = 0.7."}).startswith(
        "assigned as message #1")
    [message] = ctx.ledger.messages(kind="assignment")
    assert (message.sender, message.recipient, message.body) == ("chief", "researcher", "Set THRESHOLD = 0.7.")


def test_best_diff_is_the_whole_diff(ctx):
    long = "".join(f"+line {i}\n" for i in range(100))  # far past what a scan of the ledger loads of a diff
    row = ctx.ledger.start_experiment("researcher", "a" * 40, "b" * 40, diff=long, description="long change",
                                      hypothesis="", proposal={}, seed=1, log_dir=None)
    ctx.ledger.finish_experiment(row.id, "keep", metric=0.9)
    assert Toolbox(ctx).call("best_diff", {}).endswith(long)
