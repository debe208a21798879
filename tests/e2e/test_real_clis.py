"""The real Claude Code and Codex CLIs (installed from npm by `npm ci --prefix tests/clis`, pinned there) as an
org's agents, headless in their sandbox, against loopback servers speaking the Anthropic Messages API and the
OpenAI Responses API (streamed, as the CLIs ask for them) whose scripts play the model's turns. No API key or
internet is needed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from researchorg import Limits, Program, Runtime, detect_slots
from researchorg.ledger import Experiment
from tests.conftest import NO_NOISE, copy_task
from tests.fakes.llm_servers import FakeAnthropic, FakeResponses, Reply, tool_call

CLIS = Path(__file__).parents[1] / "clis" / "node_modules" / ".bin"
needs_clis = pytest.mark.skipif(not (CLIS / "claude").exists(),
                                reason="the real CLIs are not installed: npm ci --prefix tests/clis")


@pytest.fixture
def anthropic(monkeypatch):
    fake = FakeAnthropic()
    monkeypatch.setenv("PATH", f"{CLIS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")  # no telemetry or update checks offline
    yield fake
    fake.close()


def _program(tmp_path: Path, backend: str) -> Program:
    """A program of the accuracy task whose one researcher is the real CLI, with a builtin skill."""
    org = tmp_path / "org.toml"
    org.write_text('name = "real-cli"\nskills = ["builtin:one-change-at-a-time"]\n[[roles]]\nname = "researcher"\n'
                   f'backend = "{backend}"\ncli_timeout = 120\n' + NO_NOISE)
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def _runs_the_submitted_change(program: Program, worktree: Path) -> None:
    """One proposal: the org runs the CLI's edit of train.py under the description and hypothesis it submitted
    over MCP, and the protected evaluator it tried to edit is untouched."""
    report = Runtime(program).run(Limits(max_experiments=1))
    assert not report.paused, report.paused
    [experiment] = program.ledger.experiments()
    assert (experiment.description, experiment.hypothesis) == ("raise the threshold to 0.7",
                                                               "the classes split at 0.7")
    assert "+THRESHOLD = 0.7" in experiment.diff and "evaluate.py" not in experiment.diff
    assert experiment.status == "keep" and experiment.metric == 1.0
    assert "return sum" in (worktree / "evaluate.py").read_text()


def _refused(program: Program) -> list[tuple[str, list[str]]]:
    return [(e.data["agent"], e.data["tools"]) for e in program.ledger.events() if e.kind == "cli_refused"]


def _tool_results(requests: list[dict]) -> dict[str, dict]:
    """Each tool call's result as the CLI sent it back to the model, by tool-use id."""
    found = {}
    for body in requests:
        for message in body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block.get("type") == "tool_result":
                    found[block["tool_use_id"]] = block
    return found


@needs_clis
def test_real_claude_code_edits_with_its_own_tools_is_refused_the_evaluator_and_the_org_runs_its_change(
        tmp_path, anthropic):
    program = _program(tmp_path, "claude-code")
    worktree = program.state_dir / "worktrees" / "researcher"
    anthropic.script = [
        Reply(tool_calls=[tool_call("Read", {"file_path": f"{worktree}/train.py"})]),
        Reply(tool_calls=[tool_call("Edit", {"file_path": f"{worktree}/evaluate.py", "old_string": "return sum",
                                             "new_string": "return 1.0 + 0 * sum"})]),
        Reply(tool_calls=[tool_call("Bash", {"command": "python train.py"})]),
        Reply(tool_calls=[tool_call("Edit", {"file_path": f"{worktree}/train.py", "old_string": "THRESHOLD = 0.5",
                                             "new_string": "THRESHOLD = 0.7"})]),
        Reply(tool_calls=[tool_call("mcp__lab__results", {})]),
        Reply(tool_calls=[tool_call("mcp__lab__submit", {"description": "raise the threshold to 0.7",
                                                         "hypothesis": "the classes split at 0.7"})]),
        Reply(text="I raised the threshold and submitted it.\nDESCRIPTION: (see the submission)"),
    ]
    _runs_the_submitted_change(program, worktree)
    # what the CLI told the model: the file it read, the protected evaluator refused, the training not run
    results = _tool_results(anthropic.requests)
    read, evaluator, bash, edit, lab_results, submit = (results[f"toolu_{n}_0"] for n in range(1, 7))
    assert "THRESHOLD = 0.5" in json.dumps(read["content"]) and not read.get("is_error")
    assert evaluator.get("is_error") and not edit.get("is_error")
    assert bash.get("is_error")
    # the lab's tools over MCP, on loopback, out of the sandbox: the results it read, the submission it made
    assert "no experiments yet" in json.dumps(lab_results["content"]) and not lab_results.get("is_error")
    assert "submitted as submission 1" in json.dumps(submit["content"]) and not submit.get("is_error")
    # the org's skill, loaded natively: the CLI lists it to the model among its own skills (our prompt names none)
    assert "- one-change-at-a-time: Use whenever you prepare an experiment" in json.dumps(
        anthropic.requests[0]["messages"])
    # its refusals and its real usage, from its own output, are in the ledger
    assert _refused(program) == [("researcher", ["Bash"])]
    usage = program.ledger.usage("researcher")
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 700, 140)


@pytest.fixture
def responses(tmp_path, monkeypatch):
    """A Responses API server, and a home whose Codex config names it as the provider (as a user points Codex at
    a local server; the agent gets its own copy of ~/.codex)."""
    fake = FakeResponses()
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        'model_provider = "loopback"\n[model_providers.loopback]\nname = "loopback"\n'
        f'base_url = "{fake.base_url}"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{CLIS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    yield fake
    fake.close()


EVALUATOR = "    return sum((x >= threshold) == label for x, label in POINTS) / len(POINTS)"  # its last line


def _patch(path: str, old: str, new: str) -> str:
    """Codex's JavaScript `exec` call of its own edit tool, apply_patch."""
    patch = f"*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n+{new}\n*** End Patch\n"
    return f"await tools.apply_patch({json.dumps(patch)});"


@needs_clis
def test_real_codex_edits_with_its_own_tools_is_refused_the_evaluator_and_submits_through_mcp(tmp_path, responses):
    program = _program(tmp_path, "codex")
    worktree = program.state_dir / "worktrees" / "researcher"
    responses.script = [
        Reply(tool_calls=[tool_call("exec", 'await tools.exec_command({cmd: "python train.py > RAN"});')]),
        Reply(tool_calls=[tool_call("exec", _patch("evaluate.py", EVALUATOR, EVALUATOR.replace("return", "return 0 * ")
                                                   + " + 1.0"))]),
        Reply(tool_calls=[tool_call("exec", _patch("train.py", "THRESHOLD = 0.5", "THRESHOLD = 0.7"))]),
        Reply(tool_calls=[tool_call("exec", "text(JSON.stringify(await tools.mcp__lab__submit("
                                            '{description: "raise the threshold to 0.7", '
                                            'hypothesis: "the classes split at 0.7"})));')]),
        Reply(text="Raised the threshold and submitted it.\nDESCRIPTION: (see the submission)"),
    ]
    _runs_the_submitted_change(program, worktree)
    outputs = {item["call_id"]: json.dumps(item["output"]) for body in responses.requests for item in body["input"]
               if item.get("type") == "custom_tool_call_output"}
    # no shell: the training cannot run from the CLI (the lab runs it)
    assert "exec_command is not a function" in outputs["call_1_0"] and not (worktree / "RAN").exists()
    assert "submitted as submission 1" in outputs["call_4_0"], outputs
    # the org's skill where Codex loads a user's skills: it lists it to the model in its own instructions
    assert "one-change-at-a-time" in json.dumps([m for m in responses.requests[0]["input"]
                                                  if m.get("role") == "developer"])
    assert _refused(program) == [("researcher", [f"apply_patch {worktree}/evaluate.py"])]
    usage = program.ledger.usage("researcher")
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 500, 100)


PEEK = '''def threshold(path: str = "train.py") -> str:
    """The THRESHOLD line of a file of your worktree."""
    return next(line for line in open(path) if line.startswith("THRESHOLD"))


def broken() -> str:
    """Always fails."""
    raise RuntimeError("the cluster is down")
'''


def _results_by_tool(requests: list[dict], agent: str) -> dict[str, list[str]]:
    """What each tool call of `agent` returned to the model, by tool name (Anthropic's wire format)."""
    mine = [body for body in requests if f"You are {agent}." in json.dumps(body)]
    names = {block["id"]: block["name"] for body in mine for message in body["messages"]
             if isinstance(message["content"], list) for block in message["content"] if block.get("type") == "tool_use"}
    return {name: [json.dumps(r["content"]) for i, r in _tool_results(mine).items() if names.get(i) == name]
            for name in set(names.values())}


@needs_clis
def test_an_org_with_a_skill_and_custom_tools_runs_end_to_end_with_an_api_agent_and_the_real_claude_code(
        tmp_path, anthropic):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "peek.py").write_text(PEEK)
    org = tmp_path / "org.toml"
    org.write_text('name = "skills-and-tools"\nskills = ["builtin:one-change-at-a-time"]\n'
                   '[[tools]]\nname = "threshold"\npython = "tools/peek.py:threshold"\n'
                   '[[tools]]\nname = "broken"\npython = "tools/peek.py:broken"\n'
                   f'[[roles]]\nname = "scout"\nbackend = "anthropic"\nmodel = "claude-test"\n'
                   f'base_url = "{anthropic.base_url}"\n'
                   '[[roles]]\nname = "coder"\nbackend = "claude-code"\ncli_timeout = 120\n' + NO_NOISE)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    coder = program.state_dir / "worktrees" / "coder"
    anthropic.scripts = {
        "scout": [Reply(tool_calls=[tool_call("load_skill", {"name": "one-change-at-a-time"}),
                                    tool_call("threshold", {})]),
                  Reply(tool_calls=[tool_call("broken", {})]),
                  Reply(tool_calls=[tool_call("replace_in_file", {"path": "train.py", "old": "THRESHOLD = 0.5",
                                                                  "new": "THRESHOLD = 0.7"})]),
                  Reply(tool_calls=[tool_call("submit", {"description": "threshold 0.7"})])],
        "coder": [Reply(tool_calls=[tool_call("mcp__lab__threshold", {})]),
                  Reply(tool_calls=[tool_call("mcp__lab__broken", {})]),
                  Reply(tool_calls=[tool_call("Edit", {"file_path": f"{coder}/train.py",
                                                       "old_string": "THRESHOLD = 0.5",
                                                       "new_string": "THRESHOLD = 0.6"})]),
                  Reply(tool_calls=[tool_call("mcp__lab__submit", {"description": "threshold 0.6"})]),
                  Reply(text="Submitted.")],
    }
    report = Runtime(program).run(Limits(max_experiments=2))
    assert not report.paused, report.paused
    ran = {e.agent: e for e in program.ledger.experiments()}
    assert ran["scout"].description == "threshold 0.7" and "+THRESHOLD = 0.7" in ran["scout"].diff
    assert ran["coder"].description == "threshold 0.6" and "+THRESHOLD = 0.6" in ran["coder"].diff
    assert all(e.status in ("keep", "discard") for e in ran.values())
    for agent in ("scout", "coder"):  # the same tools, one as the API's tool calls and one over MCP
        results = _results_by_tool(anthropic.requests, agent)
        threshold, broken = (results[f"{'mcp__lab__' if agent == 'coder' else ''}{n}"] for n in ("threshold", "broken"))
        assert threshold and "THRESHOLD = 0.5" in threshold[0], results
        assert broken and "tool broken: RuntimeError: the cluster is down" in broken[0], results
    assert "# One change at a time" in _results_by_tool(anthropic.requests, "scout")["load_skill"][0]
    failed = sorted(e.data["agent"] for e in program.ledger.events() if e.kind == "tool_failed")
    assert failed == ["coder", "scout"]


EXAMPLE = Path(__file__).parents[2] / "examples" / "claude-codex"
CLAUDES = {f"claude-{k}": f"0.{50 + 5 * k}" for k in range(1, 5)}  # the threshold each one tries
CODEXES = {f"codex-{k}": value for k, value in zip(range(1, 5), ("0.45", "0.4", "0.75", "0.8"), strict=True)}


def _example(tmp_path: Path, which: str, extra: str = "") -> Program:
    """The claude-codex example on the accuracy task, each CLI agent capped at one experiment."""
    example = tmp_path / "claude-codex"
    shutil.copytree(EXAMPLE, example)
    org = example / which
    text = org.read_text().replace("cli_timeout = 900", "cli_timeout = 180\nmax_experiments = 1")
    # the CLIs' work and its merges, ungated: 8 runs leave no budget for explore-gate's gate (tests/sim has it)
    text = 'policy = "noise-aware"\n' + text.replace('[[processes]]\nkind = "verify"\nruns = 2\n', "")
    org.write_text(text + extra + NO_NOISE)
    return Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)


def _script_the_eight(program: Program, anthropic: FakeAnthropic, responses: FakeResponses) -> None:
    for agent, value in CLAUDES.items():
        worktree = program.state_dir / "worktrees" / agent
        anthropic.scripts[agent] = [
            Reply(tool_calls=[tool_call("Edit", {"file_path": f"{worktree}/train.py", "old_string": "THRESHOLD = 0.5",
                                                 "new_string": f"THRESHOLD = {value}"})]),
            Reply(tool_calls=[tool_call("mcp__lab__submit", {"description": f"threshold {value}"})]),
            Reply(text="Submitted.")]
    for agent, value in CODEXES.items():
        responses.scripts[agent] = [
            Reply(tool_calls=[tool_call("exec", _patch("train.py", "THRESHOLD = 0.5", f"THRESHOLD = {value}"))]),
            Reply(tool_calls=[tool_call("exec", "text(JSON.stringify(await tools.mcp__lab__submit("
                                                f'{{description: "threshold {value}"}})));')]),
            Reply(text="Submitted.")]


def _each_ran_its_change(program: Program) -> dict[str, Experiment]:
    ran = {e.agent: e for e in program.ledger.experiments() if e.kind == "proposal"}
    assert set(ran) == set(CLAUDES) | set(CODEXES)
    for agent, value in {**CLAUDES, **CODEXES}.items():
        assert ran[agent].description == f"threshold {value}" and f"+THRESHOLD = {value}" in ran[agent].diff
        assert ran[agent].status in ("keep", "discard")
        assert program.ledger.usage(agent).calls >= 1  # each CLI's own usage, from its output
    assert {e.slot for e in ran.values()} == {"cpu0", "cpu1"}
    return ran


@needs_clis
@pytest.mark.slow
def test_the_claude_codex_example_four_claude_code_and_four_codex_on_two_slots(tmp_path, anthropic, responses):
    program = _example(tmp_path, "solo.toml")
    _script_the_eight(program, anthropic, responses)
    report = Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=8))
    assert not report.paused, report.paused
    ran = _each_ran_its_change(program)
    merged = [program.ledger.experiment(m.experiment_id) for m in program.ledger.merges()]
    assert merged and all(e.status == "keep" for e in merged)
    assert max(e.metric for e in ran.values()) == 1.0


@needs_clis
@pytest.mark.slow
def test_the_claude_codex_example_led_by_a_chief_who_assigns_and_merges(tmp_path, anthropic, responses):
    program = _example(tmp_path, "chief.toml")
    chief = program.org().roles[0]
    org = program.root / "org.toml"
    org.write_text(org.read_text().replace('model = "claude-sonnet-5"',
                                           f'model = "claude-sonnet-5"\nbase_url = "{anthropic.base_url}"'))
    assert chief.name == "chief"
    _script_the_eight(program, anthropic, responses)
    assign = [tool_call("send_message", {"to": agent, "kind": "assignment", "body": f"Set THRESHOLD = {value}."})
              for agent, value in {**CLAUDES, **CODEXES}.items()]
    anthropic.scripts["chief"] = [Reply(tool_calls=[*assign, tool_call("done", {})])] + [
        Reply(tool_calls=[*(tool_call("merge", {"experiment": i}) for i in range(1, 9)), tool_call("done", {})])] * 3
    anthropic.default = Reply(tool_calls=[tool_call("done", {})])
    report = Runtime(program, slots=detect_slots(2, 1)).run(Limits(max_experiments=8))
    assert not report.paused, report.paused
    ran = _each_ran_its_change(program)
    assert all(e.proposal.get("assignment") for e in ran.values())
    merges = program.ledger.merges()
    assert merges and all(m.by == "chief" for m in merges)


@needs_clis
def test_real_claude_code_as_a_lead_assigns_over_mcp_and_merges_what_its_researcher_kept(tmp_path, anthropic):
    org = tmp_path / "org.toml"
    org.write_text('name = "cli-lead"\npolicy = "noise-aware"\n'  # the chief's merge, ungated, in 3 runs
                   '[[roles]]\nname = "chief"\nbackend = "claude-code"\nsubmits = false\n'
                   'merges = true\ncli_timeout = 120\n'
                   '[[roles]]\nname = "researcher"\nbackend = "claude-code"\nwaits_for_assignment = true\n'
                   'merges = false\ncli_timeout = 120\n' + NO_NOISE)
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    chief, researcher = (program.state_dir / "worktrees" / name for name in ("chief", "researcher"))
    anthropic.scripts = {
        "chief": [Reply(tool_calls=[tool_call("mcp__lab__assign", {"to": "researcher",
                                                                  "body": "Set THRESHOLD = 0.7 in train.py."})]),
                  Reply(tool_calls=[tool_call("Write", {"file_path": f"{chief}/train.py", "content": "x = 1\n"})]),
                  Reply(tool_calls=[tool_call("mcp__lab__done", {})]),
                  Reply(text="Assigned."),
                  # its next turns: woken when its researcher is free again (its experiment may still run)
                  # and when the result is reported, it looks at #1 and merges it once it is kept
                  *[Reply(tool_calls=[tool_call("mcp__lab__experiment", {"id": 1}),
                                      tool_call("mcp__lab__merge", {"experiment": 1})]), Reply(text="Done.")] * 3],
        "researcher": [Reply(tool_calls=[tool_call("Edit", {"file_path": f"{researcher}/train.py",
                                                            "old_string": "THRESHOLD = 0.5",
                                                            "new_string": "THRESHOLD = 0.7"})]),
                       Reply(tool_calls=[tool_call("mcp__lab__submit", {"description": "threshold 0.7"})]),
                       Reply(text="Submitted.")],
    }
    anthropic.default = Reply(text="Nothing more to do.")
    report = Runtime(program).run(Limits(max_experiments=1))
    assert not report.paused, report.paused
    [experiment] = program.ledger.experiments()
    assignment = next(m for m in program.ledger.messages(kind="assignment"))
    assert (assignment.sender, assignment.recipient) == ("chief", "researcher")
    assert experiment.proposal.get("assignment") == assignment.id and "+THRESHOLD = 0.7" in experiment.diff
    [merge] = program.ledger.merges()
    assert (merge.experiment_id, merge.by) == (1, "chief")
    results = _results_by_tool(anthropic.requests, "chief")
    assert "assigned as message" in results["mcp__lab__assign"][0]
    assert "#1 proposal by researcher: keep" in results["mcp__lab__experiment"][-1]  # what it judged by
    assert "merged" in results["mcp__lab__merge"][-1].lower(), results["mcp__lab__merge"]
    # the lead edits nothing: its Write is refused by its permissions (and its worktree is read-only to it)
    assert ("chief", ["Write"]) in _refused(program)
    assert "THRESHOLD = 0.5" in (chief / "train.py").read_text()
    assert program.ledger.usage("chief").calls >= 2  # one per turn, from the CLI's own output
