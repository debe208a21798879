"""The `chief` example org on tinylm: a chief on a fake Anthropic server, two juniors on a fake OpenAI server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.world.git import Git
from tests.conftest import NO_NOISE, cli
from tests.fakes.llm_servers import FakeAnthropic, FakeOpenAI, Reply, tool_call

pytest.importorskip("torch")


def _assign(agent: str, text: str) -> tuple:
    """An assignment sent as a message of that kind (the `assign` tool's equivalent)."""
    return tool_call("send_message", {"to": agent, "kind": "assignment", "body": text})


def _implement(old: str, new: str, description: str) -> list[Reply]:
    return [Reply(tool_calls=[tool_call("replace_in_file", {"path": "train.py", "old": old, "new": new})]),
            Reply(tool_calls=[tool_call("submit", {"description": description,
                                                   "hypothesis": "fewer FLOPs, more steps"})])]


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
@pytest.mark.slow
def test_chief_assigns_juniors_run_and_report_and_only_the_chief_merges(tmp_path):
    chief_server, junior_server = FakeAnthropic(), FakeOpenAI()
    try:
        example = tmp_path / "chief"
        shutil.copytree(Path(__file__).parents[2] / "examples" / "chief", example)
        org = example / "org.toml"
        text = org.read_text().replace('prompt = ["prompts/chief.md"]',
                                       f'prompt = ["prompts/chief.md"]\nbase_url = "{chief_server.base_url}"')
        text = 'policy = "noise-aware"\n' + text  # the chief's merges, ungated: 2 runs leave no budget for a gate
        org.write_text(text.replace('prompt = ["prompts/junior.md"]',
                                    f'prompt = ["prompts/junior.md"]\nbase_url = "{junior_server.base_url}"')
                       + NO_NOISE)  # the experiment ids the chief's script merges are the juniors' first two
        cli("init", str(tmp_path / "lab"), "--task", "tinylm", "--budget", "8", "--org", str(org))
        program = Program(tmp_path / "lab")
        chief_server.scripts["chief"] = [
            Reply(tool_calls=[tool_call("assign", {"to": "junior-1", "body": "Set N_LAYER = 2 in train.py."}),
                              _assign("junior-2", "Set N_EMBD = 64 in train.py."), tool_call("done", {})]),
        ] + [Reply(tool_calls=[tool_call("merge", {"experiment": 1}), tool_call("merge", {"experiment": 2}),
                               tool_call("done", {})])] * 4
        junior_server.scripts["junior-1"] = _implement("N_LAYER = 4", "N_LAYER = 2", "2 layers")
        junior_server.scripts["junior-2"] = _implement("N_EMBD = 128", "N_EMBD = 64", "width 64")

        report = Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=2))

        assert report.paused == {} and report.stopped_by in ("max_experiments", "agents_done")
        experiments = program.ledger.experiments()
        assert {(e.agent, e.description) for e in experiments} == {("junior-1", "2 layers"), ("junior-2", "width 64")}
        assert all(e.status == "keep" and e.proposal.get("assignment") for e in experiments), \
            [(e.agent, e.status, e.reason) for e in experiments]
        assert {e.slot for e in experiments} == {"cpu0", "cpu1"}
        reports = [m for m in program.ledger.messages(for_agent="chief") if m.kind == "report"]
        assert {m.sender for m in reports} == {"junior-1", "junior-2"}
        merges = program.ledger.merges()
        assert merges and all(m.by == "chief" for m in merges)
        merged = program.ledger.experiment(merges[0].experiment_id)
        assert Git(program.root)("show", "main:train.py").count(merged.diff.splitlines()[-1][1:]) == 1
        # the chief was offered lead tools, not submit; the juniors were told their assignment
        chief_tools = {t["name"] for t in chief_server.requests[0]["tools"]}
        assert {"assign", "send_message", "merge", "done"} <= chief_tools and "submit" not in chief_tools
        junior_briefings = [r["messages"][1]["content"] for r in junior_server.requests]
        assert any("Your assignment (#1 from chief)" in b or "Your assignment (#2 from chief)" in b
                   for b in junior_briefings)
        assert "report from junior-1 to chief" in cli("messages", str(program.root)).stdout
    finally:
        chief_server.close()
        junior_server.close()
