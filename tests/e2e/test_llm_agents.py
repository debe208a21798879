"""The openai and anthropic backends against local servers speaking each provider's real wire format."""

from __future__ import annotations

import pytest

from researchorg import Limits, Program, Runtime
from tests.conftest import NO_NOISE, cli, copy_task
from tests.fakes.llm_servers import FakeAnthropic, FakeOpenAI, Reply, ScriptedServer, tool_call

FAKES = {"openai": FakeOpenAI, "anthropic": FakeAnthropic}


@pytest.fixture(params=sorted(FAKES))
def fake(request):
    server = FAKES[request.param]()
    server.backend = request.param
    yield server
    server.close()


def _program(tmp_path, fake: ScriptedServer, extra: str = "") -> Program:
    org = tmp_path / "org.toml"
    org.write_text(f'name = "llm"\n[[roles]]\nname = "researcher"\nbackend = "{fake.backend}"\n'
                   f'model = "fake-model"\nbase_url = "{fake.base_url}"\nmax_retries = 3\n'
                   f'price_per_mtok = [1.0, 2.0]\n{extra}' + NO_NOISE)
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def _tool_results(fake: ScriptedServer) -> list[str]:
    """Every tool result the agent sent back, whatever the provider's format."""
    found = []
    for request in fake.requests:
        for m in request["messages"]:
            if m["role"] == "tool":
                found.append(m["content"])
            elif m["role"] == "user" and isinstance(m["content"], list):
                found += [block["content"] for block in m["content"] if block.get("type") == "tool_result"]
    return found


def _system(request: dict) -> str:
    return request["system"] if "system" in request else request["messages"][0]["content"]


def _user_texts(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user" and isinstance(m["content"], str)]


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
    tool_results = _tool_results(fake)
    malformed = "arguments are not valid JSON" if fake.backend == "openai" else "wrong arguments for replace_in_file"
    assert any(malformed in t for t in tool_results)
    assert any("evaluate.py is not editable" in t for t in tool_results)
    assert any(text.startswith("Use the tools") for text in _user_texts(fake.requests[-1]))
    # no prompt files and no program.md in this task: a one-line default; the briefing comes from the ledger
    assert _system(fake.requests[0]) == "You are a researcher improving accuracy."
    assert _user_texts(fake.requests[0])[0].startswith("You are researcher.")
    assert "#1 researcher (you) keep 0.800000: baseline" in _user_texts(fake.requests[3])[0]
    # every successful call's tokens and cost are in the ledger
    usage = program.ledger.usage("researcher")
    assert usage.calls == 7 and usage.input_tokens == 700 and usage.cost_usd == pytest.approx(7 * 140e-6)


def test_an_outage_pauses_the_agent_with_its_reason(tmp_path, fake):
    program = _program(tmp_path, fake)  # max_retries = 3
    fake.script = [Reply(status=500)] * 10
    report = Runtime(program).run(Limits(max_experiments=1))
    assert "Error from the provider" in report.paused["researcher"]
    assert program.ledger.count() == 0
    assert len(fake.requests) == 4  # the first call and 3 retries


def test_an_agent_over_its_token_cap_is_paused(tmp_path, fake):
    program = _program(tmp_path, fake, extra="max_tokens = 100\n")
    fake.script = [Reply(tool_calls=[tool_call("submit", {"description": "baseline"})])] * 3
    report = Runtime(program).run(Limits(max_experiments=3))
    assert program.ledger.count() == 1 and report.paused["researcher"] == "AgentError: over its token cap (100)"


@pytest.mark.parametrize("backend, env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_missing_api_key_is_one_error_naming_the_role(tmp_path, monkeypatch, backend, env):
    monkeypatch.delenv(env, raising=False)
    org = tmp_path / "org.toml"
    org.write_text(f'name = "llm"\n[[roles]]\nname = "chief"\nbackend = "{backend}"\nmodel = "m"\n')
    Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=org)
    proc = cli("run", str(tmp_path / "p"), check=False)
    assert proc.returncode == 1
    assert f"role chief: the {backend} backend needs ${env}" in proc.stderr and "Traceback" not in proc.stderr
    assert Program(tmp_path / "p").ledger.count() == 0


def test_llm_solo_example_copies_its_prompts_and_uses_them(tmp_path, fake):
    import shutil
    from pathlib import Path

    example = tmp_path / "llm-solo"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "llm-solo", example)
    org = example / "org.toml"
    org.write_text(org.read_text().replace('# base_url = "http://127.0.0.1:11434/v1"', f'base_url = "{fake.base_url}"')
                   .replace('backend = "openai"', f'backend = "{fake.backend}"'))
    program = Program.init(tmp_path / "p", str(copy_task(tmp_path)), org_file=org)
    assert (program.root / "prompts" / "researcher.md").is_file()
    fake.script = [Reply(tool_calls=[tool_call("submit", {"description": "baseline"})])] * 2
    Runtime(program).run(Limits(max_experiments=7))  # the noise floor's 5 runs, then one proposal each
    assert _system(fake.requests[0]).startswith("# Researcher")
    assert {e.agent for e in program.ledger.experiments(kind="proposal")} == {"researcher-1", "researcher-2"}
    assert {e.agent for e in program.ledger.experiments(kind="noise")} == {"lab"}


def test_streamed_replies_assemble_into_the_same_tool_calls(tmp_path, fake):
    program = _program(tmp_path, fake, extra="stream = true\n")
    fake.script = [
        Reply(text="Let me raise the threshold.",
              tool_calls=[tool_call("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.5",
                                                        "new": "THRESHOLD = 0.7"})]),
        Reply(tool_calls=[tool_call("submit", {"description": "threshold 0.7, streamed"})]),
    ]
    Runtime(program).run(Limits(max_experiments=1))
    (e,) = program.ledger.experiments()
    assert (e.description, e.metric) == ("threshold 0.7, streamed", 1.0)
    assert all(r.get("stream") for r in fake.requests)
    assert program.ledger.usage("researcher").input_tokens == 200


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_a_dead_server_a_refused_key_or_an_unknown_model_stops_before_any_run(tmp_path, fake, monkeypatch):
    """Probed before the noise floor: one line, exit code 1, nothing spent; `check` asks the same questions."""
    rigor = "\n[rigor]\nnoise_runs = 3\n"
    org = tmp_path / "org.toml"
    org.write_text(f'name = "llm"\n[[roles]]\nname = "researcher"\nbackend = "{fake.backend}"\nmodel = "fake-model"\n'
                   f'base_url = "{fake.base_url}"\napi_key_env = "FAKE_KEY"\n' + rigor)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    fake.key, fake.models = "right", ["another-model"]

    def refused(expected: str) -> None:
        proc = cli("run", str(program.root), check=False)
        assert proc.returncode == 1 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and program.ledger.count() == 0

    monkeypatch.setenv("FAKE_KEY", "wrong")
    refused("refused the API key")
    monkeypatch.setenv("FAKE_KEY", "right")
    refused("model 'fake-model'")
    assert cli("check", str(program.root), check=False).returncode == 1
    fake.models = ["fake-model"]
    checked = cli("check", str(program.root)).stdout
    assert f"ok role researcher: {fake.base_url}" in checked and "fake-model" in checked, checked
    port = fake.port
    fake.close()
    proc = cli("run", str(program.root), check=False)
    assert proc.returncode == 1 and f"cannot reach http://127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert program.ledger.count() == 0


def test_a_run_whose_every_agent_is_paused_exits_non_zero(tmp_path, fake):
    program = _program(tmp_path, fake)
    fake.script = [Reply(status=500)] * 10
    proc = cli("run", str(program.root), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "paused researcher" in proc.stdout and "every agent was paused" in proc.stderr
