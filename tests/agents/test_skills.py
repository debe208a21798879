"""Skills: folders an org names, copied into the program by init, checked by `check`, loaded on demand by an API
agent's tools and installed where a coding CLI loads its skills natively."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.agents.base import AgentContext
from researchorg.agents.tools import Toolbox
from tests.conftest import NO_NOISE, cli, copy_task

FAKE_BIN = Path(__file__).parents[1] / "fakes" / "bin"
PROBE = "---\nname: probe\ndescription: Use when probing.\n---\n\n# Probe\n\nProbe first, then change.\n"


def _org(tmp_path: Path, skills: str, role_skills: str = "", backend: str = "tuner", extra: str = "") -> Path:
    org = tmp_path / "org.toml"
    org.write_text(f'name = "skilled"\nskills = {skills}\n[[roles]]\nname = "researcher"\nbackend = "{backend}"\n'
                   f"skills = {role_skills or '[]'}\n{extra}" + NO_NOISE)
    return org


def _probe_skill(tmp_path: Path) -> None:
    folder = tmp_path / "myskills" / "probe"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(PROBE)
    (folder / "notes.txt").write_text("the probe's notes")


def test_init_copies_the_orgs_skills_and_an_api_agent_loads_them_on_demand(tmp_path):
    _probe_skill(tmp_path)
    org = _org(tmp_path, '["builtin:strong-baseline"]', '["myskills/probe"]')
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    assert (program.root / "skills" / "strong-baseline" / "SKILL.md").is_file()
    assert (program.root / "myskills" / "probe" / "notes.txt").read_text() == "the probe's notes"
    assert "ok" in cli("check", str(program.root), "--offline").stdout
    role = program.org().roles[0]
    assert role.skills == ["builtin:strong-baseline", "myskills/probe"]  # the org's, then the role's own
    worktree = program.ensure_agent("researcher", "researcher", "openai")
    ctx = AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                       role=role)
    box = Toolbox(ctx)
    assert {"list_skills", "load_skill"} <= {s["name"] for s in box.schemas()}
    listed = box.call("list_skills", {})
    assert listed.splitlines() == ["strong-baseline: " + listed.splitlines()[0].split(": ", 1)[1],
                                   "probe: Use when probing."]
    loaded = box.call("load_skill", {"name": "probe"})
    assert loaded.startswith("# Probe") and "Probe first" in loaded and "myskills/probe/notes.txt" in loaded
    assert "name:" not in loaded  # the front matter is what list_skills shows, not part of the instructions
    assert box.call("read_file", {"path": "myskills/probe/notes.txt"}) == "the probe's notes"
    assert box.call("load_skill", {"name": "nope"}) == "error: no skill 'nope' (list_skills names them)"
    plain = Toolbox(AgentContext(**{**ctx.__dict__, "role": role.model_copy(update={"skills": []})}))
    assert not {"list_skills", "load_skill"} & {s["name"] for s in plain.schemas()}


@pytest.mark.parametrize(("make", "expected"), [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(parents=True), "no SKILL.md in it"),
    (lambda d: (d.mkdir(parents=True), (d / "SKILL.md").write_text("# no front matter\n")), "no front matter"),
    (lambda d: (d.mkdir(parents=True), (d / "SKILL.md").write_text("---\nname: x\ndescription: a: b\n---\n")),
     "front matter is not valid YAML"),
    (lambda d: (d.mkdir(parents=True), (d / "SKILL.md").write_text("---\nname: x\n---\nbody")),
     "description: Field required"),
    (lambda d: (d.mkdir(parents=True), (d / "SKILL.md").write_text("---\nname: Big Name\ndescription: y\n---\n")),
     "name: String should match pattern"),
    (lambda d: (d.mkdir(parents=True), (d / "SKILL.md").write_bytes(b"---\nname: x\ndescription: \xff\n---\n")),
     "SKILL.md is not UTF-8 text"),
])
def test_a_broken_skill_is_one_line_from_check_and_init_makes_nothing(tmp_path, make, expected):
    make(tmp_path / "bad")
    org = _org(tmp_path, '["bad"]')
    checked = cli("check", str(org), "--offline", check=False)
    assert checked.returncode != 0 and expected in checked.stderr, checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1 and "Traceback" not in checked.stderr
    made = cli("init", str(tmp_path / "program"), "--task", str(copy_task(tmp_path)), "--org", str(org), check=False)
    assert made.returncode != 0 and expected in made.stderr and not (tmp_path / "program").exists()


def test_unknown_builtin_outside_folder_and_a_name_twice_are_one_line_each(tmp_path):
    _probe_skill(tmp_path)
    twin = tmp_path / "other" / "probe"
    twin.mkdir(parents=True)
    (twin / "SKILL.md").write_text(PROBE)
    for skills, expected in [('["builtin:nope"]', "no built-in skill 'nope' (built in: ablate-the-stack"),
                             ('["../x"]', "../x must be a folder next to the org file"),
                             ('["myskills/probe", "other/probe"]', "two skills named 'probe'")]:
        checked = cli("check", str(_org(tmp_path, skills)), "--offline", check=False)
        assert checked.returncode != 0 and expected in checked.stderr, checked.stderr


@pytest.mark.parametrize(("backend", "where"), [("claude-code", ".claude/skills"), ("codex", ".agents/skills")])
def test_a_coding_cli_finds_the_skills_where_it_loads_them_and_yours_stay(tmp_path, monkeypatch, backend, where):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    home = tmp_path / "home"
    mine = home / where / "my-own"  # a skill of your own, copied into the agent's home with your settings
    mine.mkdir(parents=True)
    (mine / "SKILL.md").write_text("---\nname: my-own\ndescription: yours\n---\n")
    monkeypatch.setenv("HOME", str(home))
    plans = tmp_path / "cli"
    plans.mkdir()
    _probe_skill(tmp_path)
    homes = '["~/.claude", "~/.claude.json"]' if backend == "claude-code" else '["~/.agents", "~/.codex"]'
    org = _org(tmp_path, '["myskills/probe"]', backend=backend,
               extra=f'cli_timeout = 10\nsandbox_paths = ["{plans}", {homes[1:-1]}]\n')
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    private = program.agent_dir("researcher") / "home" / where
    (plans / "plan.json").write_text(json.dumps([{"reads": [str(private / "probe" / "SKILL.md"),
                                                            str(private / "probe" / "notes.txt"),
                                                            str(private / "my-own" / "SKILL.md")],
                                                  "text": "DESCRIPTION: read the skill"}]))
    monkeypatch.setenv("FAKE_CLI_PLAN", str(plans / "plan.json"))
    from researchorg.agents.cli_agent import CodingCLIAgent
    role = program.org().roles[0]
    worktree = program.ensure_agent("researcher", "researcher", backend)
    ctx = AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                       role=role)
    agent = CodingCLIAgent(role, ctx)
    agent.propose(ctx)
    reads = dict(json.loads(line) for line in open(plans / "plan.json.reads"))
    assert set(reads.values()) == {"read"}, reads
    assert (private / "probe" / "SKILL.md").read_text() == PROBE
    # a skill the org drops leaves the CLI's home at the next call; yours stays
    agent.role = ctx.role = role.model_copy(update={"skills": []})
    agent.propose(ctx)
    assert not (private / "probe").exists() and (private / "my-own" / "SKILL.md").is_file()
    assert not (home / where / "probe").exists()  # nothing of the org's reaches your own home
