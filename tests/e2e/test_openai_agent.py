"""The openai backend against a local OpenAI-compatible server speaking the real wire format."""

from __future__ import annotations

import pytest

from researchorg.lab.program import Program
from researchorg.org.runtime import Limits, Runtime
from tests.conftest import cli, copy_task
from tests.fakes.openai_server import FakeOpenAI, Reply, tool_call


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


def _program(tmp_path, fake: FakeOpenAI, extra: str = "") -> Program:
    org = tmp_path / "org.toml"
    org.write_text(f'name = "llm"\n[[roles]]\nname = "researcher"\nbackend = "openai"\nmodel = "fake-model"\n'
                   f'base_url = "{fake.base_url}"\nmax_retries = 3\nprice_per_mtok = [1.0, 2.0]\n{extra}')
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def test_tool_loop_edits_submits_and_is_run_by_the_lab(tmp_path, fake):
    program = _program(tmp_path, fake)
    fake.script = [
        Reply(tool_calls=[tool_call("submit", {"description": "baseline", "hypothesis": "measure first"})]),
        Reply(status=429),  # rate limited: the SDK backs off and retries
        Reply(status=500),  # server error: likewise
        Reply(tool_calls=[tool_call("read_file", {"path": "train.py"})]),
        Reply(tool_calls=[tool_call("replace_in_file", "{not json")]),  # malformed: the model is told
        Reply(tool_calls=[tool_call("write_file", {"path": "evaluate.py", "content": "cheat"})]),  # refused
        Reply(text="I think raising the threshold will help."),  # talks without acting: nudged
        Reply(tool_calls=[tool_call("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.5",
                                                        "new": "THRESHOLD = 0.7"})]),
        Reply(tool_calls=[tool_call("submit", {"description": "raise the threshold to 0.7",
                                               "hypothesis": "the classes split at 0.7"})]),
    ]
    report = Runtime(program).run(Limits(max_experiments=2))
    experiments = program.ledger.experiments()
    assert [(e.description, e.status, e.metric) for e in experiments] == [
        ("baseline", "keep", 0.8), ("raise the threshold to 0.7", "keep", 1.0)]
    assert experiments[1].hypothesis == "the classes split at 0.7"
    assert "-THRESHOLD = 0.5\n+THRESHOLD = 0.7" in experiments[1].diff
    assert report.paused == {}
    tool_results = [m["content"] for r in fake.requests for m in r["messages"] if m["role"] == "tool"]
    assert any("arguments are not valid JSON" in t for t in tool_results)
    assert any("evaluate.py is not editable" in t for t in tool_results)
    assert any(m["content"].startswith("Use the tools") for m in fake.requests[-1]["messages"] if m["role"] == "user")
    # the system prompt is program.md; the briefing comes from the ledger, bounded
    first = fake.requests[0]["messages"]
    assert first[0]["role"] == "system" and first[1]["content"].startswith("You are researcher.")
    assert "#1 researcher (you) keep 0.800000: baseline" in fake.requests[3]["messages"][1]["content"]
    # every successful call's tokens and cost are in the ledger
    usage = program.ledger.usage("researcher")
    assert usage["calls"] == 7 and usage["input_tokens"] == 700 and usage["cost_usd"] == pytest.approx(7 * 140e-6)


def test_an_outage_pauses_the_agent_with_its_reason(tmp_path, fake):
    program = _program(tmp_path, fake)  # max_retries = 3
    fake.script = [Reply(status=500)] * 10
    report = Runtime(program).run(Limits(max_experiments=1))
    assert "InternalServerError from the provider" in report.paused["researcher"]
    assert program.ledger.count() == 0
    assert len(fake.requests) == 4  # the first call and 3 retries


def test_an_agent_over_its_token_cap_is_paused(tmp_path, fake):
    program = _program(tmp_path, fake, extra="max_tokens = 100\n")
    fake.script = [Reply(tool_calls=[tool_call("submit", {"description": "baseline"})])] * 3
    report = Runtime(program).run(Limits(max_experiments=3))
    assert program.ledger.count() == 1 and report.paused["researcher"] == "AgentError: over its token cap (100)"


def test_missing_api_key_is_one_error_naming_the_role(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    org = tmp_path / "org.toml"
    org.write_text('name = "llm"\n[[roles]]\nname = "chief"\nbackend = "openai"\nmodel = "gpt-x"\n')
    Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=org)
    proc = cli("run", str(tmp_path / "p"), check=False)
    assert proc.returncode == 1
    assert "role chief: the openai backend needs $OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_llm_solo_example_copies_its_prompts_and_uses_them(tmp_path, fake):
    import shutil
    from pathlib import Path

    example = tmp_path / "llm-solo"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "llm-solo", example)
    org = example / "org.toml"
    org.write_text(org.read_text().replace('# base_url = "http://127.0.0.1:11434/v1"', f'base_url = "{fake.base_url}"'))
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=org)
    assert (program.root / "prompts" / "researcher.md").is_file()
    fake.script = [Reply(tool_calls=[tool_call("submit", {"description": "baseline"})])] * 2
    Runtime(program).run(Limits(max_experiments=2))
    assert fake.requests[0]["messages"][0]["content"].startswith("# Researcher")
    assert {e.agent for e in program.ledger.experiments()} == {"researcher-1", "researcher-2"}
