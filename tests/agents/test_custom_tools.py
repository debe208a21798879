"""Custom tools: a Python function an org names, copied by init, checked by `check`, described from its signature
and docstring, and called in a subprocess of its own, so a tool that raises, hangs or prints is one error for the
agent and an event in the ledger."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.agents.base import AgentContext
from researchorg.agents.tools import Toolbox
from researchorg.harness import sandbox
from tests.conftest import NO_NOISE, cli, copy_task

TOOLS = '''"""The org's own tools."""
import os
import time


def threshold(path: str = "train.py") -> str:
    """The THRESHOLD line of a file of the worktree.

    Reads it from the working directory the lab gives the tool (the agent's worktree)."""
    print("chatter on stdout is not the answer")
    return next(line for line in open(path) if line.startswith("THRESHOLD"))


def params(width: int, depth: int = 2) -> dict:
    """Weights and biases of a width x depth MLP."""
    return {"params": depth * (width * width + width), "cwd": os.path.basename(os.getcwd())}


def broken(why: str = "it is broken") -> str:
    """Always raises."""
    raise ValueError(why)


def hangs() -> str:
    """Never answers."""
    time.sleep(300)
    return "late"


def dies() -> str:
    """Kills its own interpreter."""
    os._exit(3)


def read(path: str) -> str:
    """A naive tool: reads whatever path it is given."""
    return open(path, "rb").read().decode(errors="replace")[:100]


def write(path: str, text: str) -> str:
    """A naive tool: writes wherever it is told."""
    open(path, "w").write(text)
    return "written"


def env(name: str) -> str:
    """A variable of its environment."""
    return os.environ.get(name, "-")
'''

ORG = """name = "tooled"
{tools}
[[roles]]
name = "researcher"
backend = "{backend}"
model = "claude-test"
{role}
""" + NO_NOISE

ALL = "".join(f'[[tools]]\nname = "{name}"\npython = "tools/mine.py:{name}"\n{extra}'
              for name, extra in [("threshold", ""), ("params", ""), ("broken", ""), ("hangs", "timeout = 1.5\n"),
                                  ("dies", ""), ("read", ""), ("write", ""),
                                  ("env", 'pass_env = ["SEARCH_API_KEY"]\n')])


def _org(tmp_path: Path, tools: str = ALL, role: str = "", backend: str = "anthropic", source: str = TOOLS) -> Path:
    (tmp_path / "tools").mkdir(exist_ok=True)
    (tmp_path / "tools" / "mine.py").write_text(source)
    org = tmp_path / "org.toml"
    org.write_text(ORG.format(tools=tools, role=role, backend=backend))
    return org


def _toolbox(program: Program) -> Toolbox:
    role = program.org().roles[0]
    worktree = program.ensure_agent("researcher", "researcher", "anthropic")
    ctx = AgentContext("researcher", program.task, worktree, program.agent_dir("researcher"), program.ledger,
                       role=role, files=program.read_at, main=lambda: program.git.head_of("main"))
    return Toolbox(ctx, role.options.get("tools"))  # as the LLM agent makes it: the role's limit on its tools


def test_init_copies_a_tool_the_model_sees_with_its_schema_and_calls_in_its_worktree(tmp_path):
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=_org(tmp_path))
    assert (program.root / "tools" / "mine.py").read_text() == TOOLS
    assert "ok" in cli("check", str(program.root), "--offline").stdout
    box = _toolbox(program)
    schemas = {s["name"]: s for s in box.schemas()}
    assert {"threshold", "params", "read_file", "submit"} <= set(schemas)
    assert schemas["params"]["description"] == "Weights and biases of a width x depth MLP."
    assert schemas["params"]["parameters"]["properties"] == {"width": {"type": "integer"},
                                                             "depth": {"type": "integer", "default": 2}}
    assert schemas["params"]["parameters"]["required"] == ["width"]
    assert box.call("threshold", {}) == "THRESHOLD = 0.5\n"  # from the worktree; its print is not the answer
    assert box.call("params", '{"width": 4}') == '{"params": 40, "cwd": "researcher"}'
    assert box.call("params", {"width": "wide"}).startswith(
        "error: tool params: wrong arguments: width: Input should be a valid integer")
    assert box.call("params", {}) == "error: tool params: wrong arguments: width: Missing required argument"


def test_a_tool_that_raises_hangs_or_dies_is_one_error_and_an_event_and_the_next_call_works(tmp_path):
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=_org(tmp_path))
    box = _toolbox(program)
    assert box.call("broken", {"why": "no GPU"}) == "error: tool broken: ValueError: no GPU"
    started = time.monotonic()
    assert box.call("hangs", {}) == "error: tool hangs: no answer within 1.5 s (stopped)"
    assert time.monotonic() - started < 10
    assert box.call("dies", {}).startswith("error: tool dies: exit status 3")
    assert box.call("threshold", {}) == "THRESHOLD = 0.5\n"
    failed = [(e.data["agent"], e.data["tool"]) for e in program.ledger.events() if e.kind == "tool_failed"]
    assert failed == [("researcher", "broken"), ("researcher", "hangs"), ("researcher", "dies")]


def test_a_tool_runs_the_programs_code_not_what_an_agent_wrote_in_its_worktree(tmp_path):
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=_org(tmp_path))
    box = _toolbox(program)
    (box.ctx.worktree / "tools" / "mine.py").write_text(TOOLS.replace('raise ValueError(why)', 'return "pwned"'))
    assert box.call("broken", {}) == "error: tool broken: ValueError: it is broken"
    assert box.call("write_file", {"path": "tools/mine.py", "content": "x"}).startswith("error: tools/mine.py is not")


def test_a_naive_tool_cannot_be_turned_against_the_lab_it_runs_in_the_agents_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_API_KEY", "for-the-tool")
    monkeypatch.setenv("OTHER_SECRET_TOKEN", "not-for-the-tool")
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=_org(tmp_path))
    other = program.ensure_agent("other", "researcher", "anthropic")
    box = _toolbox(program)
    ledger = program.state_dir / "ledger.db"
    assert box.call("read", {"path": "train.py"}).startswith('"""Editable')
    for path in (str(ledger), "../../ledger.db", str(other / "train.py"), str(program.root / "org.toml")):
        refused = box.call("read", {"path": path})
        assert re.match(r"error: tool read: (FileNotFoundError|PermissionError)", refused), (path, refused)
    assert box.call("write", {"path": "notes.txt", "text": "mine"}) == "written"
    # a protected file in the worktree is read-only where bubblewrap mounts it so; Landlock alone cannot keep a
    # file of a writable folder (the lab's hash check before every run refuses what was changed there)
    protected = ["evaluate.py"] if sandbox.bwrap() else []
    for path in (*protected, str(other / "train.py"), str(tmp_path / "planted.txt")):
        assert box.call("write", {"path": path, "text": "x"}).startswith("error: tool write: "), path
    assert not protected or "return sum" in (box.ctx.worktree / "evaluate.py").read_text()
    assert not (tmp_path / "planted.txt").exists()
    assert (box.call("env", {"name": "SEARCH_API_KEY"}), box.call("env", {"name": "OTHER_SECRET_TOKEN"})) == (
        "for-the-tool", "-")
    assert program.ledger.count() == 0 and len(program.ledger.events()) > 0  # the ledger is intact and readable


def test_a_role_limit_applies_to_its_tools_and_roles_get_only_the_tools_that_name_them(tmp_path):
    limited = _org(tmp_path, role='tools = ["read_file", "params"]')
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=limited)
    box = _toolbox(program)
    assert {s["name"] for s in box.schemas()} == {"read_file", "params", "submit"}
    assert box.call("threshold", {}) == "error: tool threshold is not available to this role"
    other = tmp_path / "other"
    other.mkdir()
    named = _org(other, tools='[[tools]]\nname = "params"\npython = "tools/mine.py:params"\nroles = ["chief"]\n',
                 role='[[roles.custom_tools]]\nname = "threshold"\npython = "tools/mine.py:threshold"\n'
                      '[[roles]]\nname = "chief"\nbackend = "anthropic"\nmodel = "claude-test"\nsubmits = false\n')
    assert "ok" in cli("check", str(named), "--offline").stdout
    from researchorg.config import load_org
    roles = {r.name: [t.name for t in r.custom_tools] for r in load_org(named).roles}
    assert roles == {"researcher": ["threshold"], "chief": ["params"]}


@pytest.mark.parametrize(("tools", "source", "expected"), [
    ('[[tools]]\nname = "x"\npython = "tools/nope.py:x"\n', TOOLS,
     "tool x: no file tools/nope.py next to the org file"),
    ('[[tools]]\nname = "x"\npython = "tools/mine.py:nothing"\n', TOOLS,
     "tool x: tools/mine.py:nothing does not load: mine.py has no function nothing"),
    ('[[tools]]\nname = "x"\npython = "tools/mine.py:x"\n', "def x(:\n",
     "tool x: tools/mine.py:x does not load: SyntaxError: invalid syntax (mine.py, line 1)"),
    ('[[tools]]\nname = "x"\npython = "tools/mine.py:x"\n', "import no_such_module\ndef x(): pass\n",
     "tool x: tools/mine.py:x does not load: ModuleNotFoundError: No module named 'no_such_module'"),
    ('[[tools]]\nname = "submit"\npython = "tools/mine.py:params"\n', TOOLS,
     "tool submit: a built-in tool has that name; choose another"),
    ('[[tools]]\nname = "x"\npython = "../mine.py:x"\n', TOOLS, "tools.0: Value error, tool x: ../mine.py must be a "
                                                                   "file next to the org file"),
    ('[[tools]]\nname = "x"\npython = "tools/mine.py:params"\nroles = ["nobody"]\n', TOOLS,
     "tool x: no role named 'nobody'"),
    ('[[tools]]\nname = "x"\npython = "tools/mine.py:params"\ntimeout = -1\n', TOOLS,
     "tools.0.timeout: Input should be greater than 0"),
])
def test_a_broken_tool_is_one_line_from_check_and_init_makes_nothing(tmp_path, tools, source, expected):
    org = _org(tmp_path, tools=tools, source=source)
    checked = cli("check", str(org), "--offline", check=False)
    assert checked.returncode != 0 and "Traceback" not in checked.stderr
    [line] = (checked.stdout + checked.stderr).strip().splitlines()
    assert expected in line, line
    if "nope" in tools or "nothing" in tools:  # init refuses as check does, and makes nothing (one of each kind)
        made = cli("init", str(tmp_path / "program"), "--task", str(copy_task(tmp_path)), "--org", str(org),
                   check=False)
        assert made.returncode != 0 and expected in made.stdout + made.stderr
        assert not (tmp_path / "program").exists()


SERVER = '''"""An MCP server of the org's own (the mcp SDK's server)."""
import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("papers")


@server.tool()
def search(query: str, limit: int = 3) -> str:
    """Find papers about a query."""
    return f"{limit} papers on {query} (from {os.path.basename(os.getcwd())})"


@server.tool()
def fails() -> str:
    """Always fails."""
    raise ValueError("the index is missing")


@server.tool()
def hangs() -> str:
    """Never answers."""
    time.sleep(300)
    return "late"


if __name__ == "__main__":
    server.run()
'''

MCP_TOOL = '[[tools]]\nname = "papers"\nmcp = ["python", "tools/papers.py"]\ntimeout = 20\n'


@pytest.mark.benchmark  # longer than the suite's share: .ci/run runs it (pytest -m benchmark)
def test_an_mcp_server_commands_tools_join_the_role_and_its_failures_are_one_error_each(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "papers.py").write_text(SERVER)
    org = _org(tmp_path, tools=MCP_TOOL)
    assert "ok" in cli("check", str(org), "--offline").stdout
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    assert (program.root / "tools" / "papers.py").read_text() == SERVER
    box = _toolbox(program)
    schemas = {s["name"]: s for s in box.schemas()}
    assert {"papers_search", "papers_fails", "papers_hangs"} <= set(schemas)
    assert schemas["papers_search"]["description"] == "Find papers about a query."
    assert schemas["papers_search"]["parameters"]["required"] == ["query"]
    assert box.call("papers_search", {"query": "muon"}) == "3 papers on muon (from researcher)"
    assert box.call("papers_fails", {}) == "error: tool papers_fails: Error executing tool fails"  # the server's words
    box.ctx.role.custom_tools[0].timeout = 2.0
    started = time.monotonic()
    assert box.call("papers_hangs", {}) == "error: tool papers: no answer within 2 s (stopped)"
    assert time.monotonic() - started < 15
    failed = [e.data["tool"] for e in program.ledger.events() if e.kind == "tool_failed"]
    assert failed == ["papers_fails", "papers_hangs"]


@pytest.mark.parametrize(("command", "expected"), [
    ('["no-such-command-here"]', "tool papers: the MCP server does not answer: no-such-command-here: "),
    ('["python", "-c", "print(1)"]', "tool papers: the MCP server does not answer: "),
    ('["python", "tools/both.py"]', "tool papers: set one of python (FILE.py:FUNCTION) or mcp (a command)"),
])
def test_an_mcp_tool_that_does_not_answer_is_one_line_from_check(tmp_path, command, expected):
    tools = f'[[tools]]\nname = "papers"\nmcp = {command}\ntimeout = 10\n'
    if "both" in command:
        tools += 'python = "tools/mine.py:params"\n'
    checked = cli("check", str(_org(tmp_path, tools=tools)), "--offline", check=False)
    assert checked.returncode != 0 and "Traceback" not in checked.stderr
    [line] = (checked.stdout + checked.stderr).strip().splitlines()
    assert expected in line, line


def test_a_tool_imports_the_helpers_beside_it_and_returns_an_empty_string(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    org = _org(tmp_path, tools='[[tools]]\nname = "twice"\npython = "tools/mine.py:twice"\n'
                                '[[tools]]\nname = "nothing"\npython = "tools/mine.py:nothing"\n',
               source='from helper import double\n\ndef twice(x: int) -> int:\n    """Twice x."""\n'
                      '    return double(x)\n\ndef nothing() -> str:\n    """Says nothing."""\n    return ""\n')
    program = Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org)
    assert (program.root / "tools" / "helper.py").is_file()  # the tool's folder is copied with it
    box = _toolbox(program)
    assert (box.call("twice", {"x": 21}), box.call("nothing", {})) == ("42", "")


def test_two_tools_on_one_server_stay_apart_and_a_relative_org_path_works(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "papers.py").write_text(SERVER)
    org = _org(tmp_path, tools=MCP_TOOL + MCP_TOOL.replace('name = "papers"', 'name = "lit"'))
    checked = cli("check", "org.toml", "--offline", cwd=tmp_path)
    assert "ok" in checked.stdout, checked.stdout + checked.stderr
    box = _toolbox(Program.init(tmp_path / "program", str(copy_task(tmp_path)), org_file=org))
    names = {s["name"] for s in box.schemas()}
    assert {"papers_search", "lit_search"} <= names and "papers_lit_search" not in names
    assert box.call("lit_search", {"query": "x"}) == "3 papers on x (from researcher)"


@pytest.mark.parametrize(("source", "expected"), [
    ("def x(a: int, /) -> str:\n    return ''\n", "every parameter must be one a model can name"),
    ("def x(*values: int) -> str:\n    return ''\n", "every parameter must be one a model can name"),
    ("async def x() -> str:\n    return ''\n", "must be a plain function (not async, not a generator)"),
    ("raise ValueError('bad [/oops] [red]x')\n", "ValueError: bad [/oops] [red]x"),  # shown as written
])
def test_a_function_a_model_cannot_call_is_one_line_as_written(tmp_path, source, expected):
    org = _org(tmp_path, tools='[[tools]]\nname = "x"\npython = "tools/mine.py:x"\n', source=source)
    checked = cli("check", str(org), "--offline", check=False)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    [line] = (checked.stdout + checked.stderr).strip().splitlines()
    assert expected in line, line
