"""`researchorg mcp`: one agent's lab tools over stdio, driven by the `mcp` SDK's own client."""

from __future__ import annotations

import sys

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from researchorg import Program
from tests.conftest import NO_NOISE, cli, copy_task


def _program(tmp_path, backend: str) -> Program:
    org = tmp_path / "org.toml"
    org.write_text(f'name = "mcp"\nskills = ["builtin:noise-is-not-progress"]\n[[roles]]\nname = "researcher"\n'
                   f'backend = "{backend}"\n' + NO_NOISE)
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def _session(program: Program, calls: list[tuple[str, dict]]) -> tuple[list[str], list[tuple[bool, str]]]:
    """The tools the server lists, and each call's (is_error, text)."""
    server = StdioServerParameters(command=sys.executable, args=["-m", "researchorg", "mcp", str(program.root),
                                                                 "--agent", "researcher"])

    async def main():
        async with Client(server) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            results = []
            for name, args in calls:
                result = await client.call_tool(name, args)
                results.append((result.is_error, result.content[0].text))
            return tools, results

    return anyio.run(main)


def test_an_mcp_client_reads_the_lab_edits_and_submits_as_its_agent(tmp_path):
    program = _program(tmp_path, "interactive")
    tools, results = _session(program, [
        ("read_file", {"path": "train.py"}),
        ("write_file", {"path": "evaluate.py", "content": "print('accuracy: 1.0')"}),
        ("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.5", "new": "THRESHOLD = 0.6"}),
        ("noise_floor", {}),
        ("load_skill", {"name": "noise-is-not-progress"}),
        ("send_message", {"to": "nobody", "body": "hi"}),
        ("send_message", {"to": "everyone", "body": "trying a higher threshold"}),
        ("submit", {"description": "threshold 0.6", "hypothesis": "fewer false positives"}),
    ])
    assert {"read_file", "results", "experiment", "best_diff", "noise_floor", "read_messages", "send_message",
            "submit", "list_skills", "load_skill"} <= set(tools)
    assert "merge" not in tools and "done" not in tools
    (read, protected, edited, floor, skill, nobody, sent, submitted) = results
    assert read == (False, (program.root / "train.py").read_text())
    assert protected[0] and "evaluate.py is not editable" in protected[1]
    assert edited == (False, "replaced 1 occurrence in train.py")
    worktree = program.state_dir / "worktrees" / "researcher"
    assert "THRESHOLD = 0.6" in (worktree / "train.py").read_text()  # in the agent's worktree, nowhere else
    assert "THRESHOLD = 0.5" in (program.root / "train.py").read_text()
    assert floor == (False, "no noise floor measured yet")
    assert not skill[0] and "noise floor" in skill[1]
    assert nobody[0] and "no agent named 'nobody'" in nobody[1]
    assert not sent[0] and [m.body for m in program.ledger.messages()] == ["trying a higher threshold"]
    assert not submitted[0] and submitted[1].startswith("submitted as submission 1")
    taken = program.ledger.take_submission("researcher")
    assert (taken.description, taken.hypothesis) == ("threshold 0.6", "fewer false positives")


def test_an_agent_that_proposes_on_its_own_takes_no_submission_and_a_wrong_agent_is_one_line(tmp_path):
    program = _program(tmp_path, "tuner")
    _, [(error, text)] = _session(program, [("submit", {"description": "x"})])
    assert error and "run by the tuner backend" in text
    assert program.ledger.take_submission("researcher") is None
    wrong = cli("mcp", str(program.root), "--agent", "nobody", check=False)
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines() == [
        f"error: no agent 'nobody' in {program.root / 'org.toml'} (agents: researcher)"]


def test_an_experiments_evidence_is_one_call(tmp_path):
    program = _program(tmp_path, "interactive")
    program.ensure_agent("researcher", "researcher", "interactive")
    row = program.ledger.start_experiment("researcher", "a" * 40, "b" * 40, diff="+x = 1\n", description="x",
                                          hypothesis="x helps", proposal={}, seed=1, log_dir=None)
    program.ledger.finish_experiment(row.id, "discard", metric=0.5, summary={
        "decision": {"rule": "no gain", "text": "+0.0100 accuracy, same params"}})
    _, [(error, text), (missing, _)] = _session(program, [("experiment", {"id": row.id}), ("experiment", {"id": 999})])
    assert not error and "discard" in text and "no gain; +0.0100 accuracy, same params" in text
    assert "hypothesis: x helps" in text and text.endswith("+x = 1\n")
    assert missing
