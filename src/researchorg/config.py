"""Spec files: loading TOML into pydantic models with one-line errors, and the org spec.

Every spec file (task.toml, org.toml) is read by `load_toml_model`, so a bad
file always reads the same way: the file, the key and what is allowed, e.g.
`org.toml: roles.0.backend: Input should be 'tuner' or 'random' (got 'gpt')`.
"""

from __future__ import annotations

import re
import shutil
import tomllib
import types
import typing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from researchorg.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for spec models: unknown keys are errors, not silently ignored, and so are inf and nan (a budget of
    `inf` seconds would hang a run, a `nan` bound would pass every comparison)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`budget_seconds = true` is a typo, not 1 second: a number field takes no true or false."""
        if isinstance(value, bool) and info.field_name is not None and _numeric(cls.model_fields[info.field_name]
                                                                                .annotation):
            raise ValueError("should be a number, not true or false")
        return value


def _numeric(annotation: Any) -> bool:
    """Whether a field's type is a number (int or float, maybe optional), with no bool among its choices."""
    def bare(kind: Any) -> Any:
        while typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        return kind

    annotation = bare(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = {bare(option) for option in typing.get_args(annotation)} - {type(None)}
    else:
        options = {annotation}
    return bool(options) and bool(options & {int, float}) and bool not in options and options <= {int, float, str}


def load_toml_model(path: Path | str, model: type[M], **extra: Any) -> M:
    """Parse `path` as TOML and validate it as `model`; raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a TOML file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return validate(model, {**data, **extra}, path)


def validate(model: type[M], data: dict[str, Any], where: Path | str, at: tuple[str | int, ...] = ()) -> M:
    """`data` validated as `model`; a ConfigError naming the file (`where`), the key (under `at`) and what is
    allowed otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        # an unknown key is most often a misspelt one: report it before the "missing" it causes
        first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        # a key as written, or quoted where it holds a line break or another character that does not print
        key = ".".join(str(part) if str(part).isprintable() else repr(str(part)) for part in (*at, *first["loc"]))
        if not key and first["type"] == "value_error":  # a check of the whole file: its message names the keys
            more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
            raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}{more}") from None
        key = key or "(top level)"
        shown = not first["loc"] or isinstance(first.get("input"), dict | list)  # a whole table: too long to show
        got = f" (got {first['input']!r})" if first["type"] != "missing" and "input" in first and not shown else ""
        more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
        raise ConfigError(f"{where}: {key}: {first['msg']}{got}{more}") from None


# The org spec -----------------------------------------------------------------
class ToolSpec(Strict):
    """A tool of the org's own, given to the roles it names (all, by default): a Python function (`python =
    "tools/flops.py:count_flops"`, the file relative to the org file; its parameters' annotations and its
    docstring make the schema the model sees), or the tools of an MCP server started by a command (`mcp =
    ["python", "tools/papers.py"]`; each of its tools is `NAME_TOOL`). `init` copies `files` into the program
    (agents/custom_tools.py)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    python: str | None = Field(default=None, pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$")  # FILE.py:FUNCTION
    mcp: list[str] | None = Field(default=None, min_length=1)  # a command serving MCP on stdio
    description: str = ""  # what the model reads about a function; default: its docstring
    timeout: float = Field(default=60.0, gt=0, le=3600)  # seconds a call may take before it is stopped
    roles: list[str] | None = None  # the roles that get it; None: every role
    pass_env: list[str] = []  # variables that look like secrets (a search API's key) the tool may have

    @property
    def file(self) -> str:
        """The function's file (a `python` tool)."""
        return (self.python or "").rsplit(":", 1)[0]

    @property
    def function(self) -> str:
        return (self.python or "").rsplit(":", 1)[-1]

    def files(self, org_dir: Path) -> list[str]:
        """The files of the tool that `init` copies, relative to the org file: the function's file, or each of
        the command's arguments that is a file next to the org file, each with the files of its folder (its
        helpers) unless it lies beside the org file itself."""
        named = [self.file] if self.python is not None else [
            a for a in self.mcp or [] if not Path(a).is_absolute() and ".." not in Path(a).parts
            and (org_dir / a).is_file()]
        found = []
        for entry in named:
            folder = Path(entry).parent
            found += [entry] if folder == Path(".") else [
                p.relative_to(org_dir).as_posix() for p in sorted((org_dir / folder).rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts]
        return list(dict.fromkeys(found))

    @model_validator(mode="after")
    def _one_kind(self) -> ToolSpec:
        if (self.python is None) == (self.mcp is None):
            raise ValueError(f"tool {self.name}: set one of python (FILE.py:FUNCTION) or mcp (a command)")
        if self.python is not None:
            file = Path(self.file)
            if file.is_absolute() or ".." in file.parts:
                raise ValueError(f"tool {self.name}: {file} must be a file next to the org file")
        return self


class RoleSpec(Strict):
    """One role of the organization, filled by `count` agents of one backend.

    These are the keys every role has; any other key is an option of the role's backend, checked by the
    backend's own model (agents/options.py) when the org is checked or run."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    count: int = Field(default=1, ge=1, le=100_000)
    backend: str
    seed: int = 0
    max_experiments: int | None = Field(default=None, ge=1)  # cap per agent
    priority: float = Field(default=1.0, gt=0)  # weight in the scheduler's fair share
    in_flight: int = Field(default=1, ge=1)  # experiments of one agent queued or running at once
    adopt_program: bool = True  # with a merge process: continue from the program branch when it is better
    submits: bool = True  # false: a lead (e.g. a chief) that assigns and merges but runs no experiment itself
    merges: bool = False  # the role may merge kept experiments into the program branch (its `merge` tool)
    waits_for_assignment: bool = False  # propose only to answer an assignment message
    prompt: list[str] = []  # markdown files, relative to the org file, that make the role's system prompt
    skills: list[str] = []  # skill folders (a SKILL.md each), relative to the org file: the org's and its own
    custom_tools: list[ToolSpec] = []  # tools of its own (`[[roles.custom_tools]]`), and the org's that name it
    think_seconds: float = Field(default=0.0, ge=0)  # thinking time before each turn, on the engine's clock

    @property
    def options(self) -> dict[str, Any]:
        """The keys of the role that belong to its backend."""
        return dict(self.model_extra or {})


class ProcessSpec(Strict):
    """A process of the org: `standup` on a clock, `merge` on every kept experiment, `verify` before every
    merge (see engine/)."""

    kind: Literal["standup", "merge", "verify"]
    every_experiments: int | None = Field(default=None, ge=1)
    every_minutes: float | None = Field(default=None, gt=0)
    runs: int = Field(default=2, ge=1)  # verify: fresh-seed runs of a candidate before it may merge

    @model_validator(mode="after")
    def _has_a_clock(self) -> ProcessSpec:
        if self.kind == "standup" and self.every_experiments is None and self.every_minutes is None:
            raise ValueError(f"process {self.kind}: set every_experiments or every_minutes")
        return self


class RigorSpec(Strict):
    """How results are judged (see stats/acceptance.py)."""

    noise_runs: int = Field(default=5, ge=0)  # baseline runs with different seeds per hardware class; 0: none
    sigmas: float = Field(default=2.0, gt=0)  # noise-aware, and explore-gate's gate: keep above this many SEs
    max_runs: int = Field(default=4, ge=1)  # noise-aware, and explore-gate's gate: runs before it is dropped
    explore_sigmas: float = 0.0  # explore-gate: an agent's branch moves on one run above this many SEs
    gate_trigger: float = Field(default=2.0, ge=0)  # explore-gate: gate a branch once it beats main by this many SEs
    load_tolerance: float = Field(default=0.5, gt=0)  # explore-gate: runs within this many busy cores match
    screen: float = Field(default=0.25, gt=0, le=1)  # screen-gate: proposals train for this fraction of the budget


class OrgCompute(Strict):
    """Where the org's experiments run (`[compute]`); `researchorg run --ray` and `--threads` win over it."""

    ray: str | None = Field(default=None, min_length=1)  # "auto" or a cluster's address: run on its nodes
    threads: int | None = Field(default=None, ge=1)  # CPU threads per slot


class OrgSpec(Strict):
    """An organization: who works on the program and how their results are judged."""

    name: str
    description: str = ""
    roles: list[RoleSpec] = Field(min_length=1)
    policy: Literal["greedy", "noise-aware", "explore-gate", "screen-gate"] = "explore-gate"
    rigor: RigorSpec = RigorSpec()
    processes: list[ProcessSpec] = []
    skills: list[str] = []  # skill folders every role gets (a role's own `skills` add to them)
    tools: list[ToolSpec] = []  # tools of the org's own, for the roles each names (`[[tools]]`)

    @property
    def merging(self) -> bool:
        """Whether kept changes reach the program branch: a merge process, or a role that may merge."""
        return any(p.kind == "merge" for p in self.processes) or any(role.merges for role in self.roles)

    @property
    def measures_baseline(self) -> bool:
        """Whether the lab runs the baseline's code (a noise floor of at least 2 runs): then results.tsv's first
        row is its first run; without, the org's first result is, as in autoresearch's loop."""
        return self.rigor.noise_runs >= 2
    compute: OrgCompute = OrgCompute()

    @model_validator(mode="after")
    def _org_skills_and_tools_to_roles(self) -> OrgSpec:
        names = {role.name for role in self.roles}
        for tool in self.tools:
            unknown = sorted(set(tool.roles or ()) - names)
            if unknown:
                raise ValueError(f"tool {tool.name}: no role named {unknown[0]!r} (roles: {', '.join(sorted(names))})")
        for role in self.roles:
            role.skills = list(dict.fromkeys([*self.skills, *role.skills]))
            own = {t.name for t in role.custom_tools}
            role.custom_tools = [*role.custom_tools, *(t for t in self.tools if (t.roles is None or role.name in
                                                                                  t.roles) and t.name not in own)]
            seen = [t.name for t in role.custom_tools]
            twice = sorted({n for n in seen if seen.count(n) > 1})
            if twice:
                raise ValueError(f"role {role.name}: two tools named {twice[0]!r}")
        return self

    @field_validator("roles")
    @classmethod
    def _unique_role_names(cls, roles: list[RoleSpec]) -> list[RoleSpec]:
        names = [r.name for r in roles]
        if len(names) != len(set(names)):
            raise ValueError(f"role names must be unique, got {names}")
        counts = Counter(_agent_name(role, i) for role in roles for i in range(role.count))
        clash = sorted(a for a, n in counts.items() if n > 1)
        if clash:  # they would share one branch, one worktree and one ledger row
            raise ValueError(f"two agents would both be named {clash[0]!r} (a role of count > 1 names its agents "
                             "ROLE-1, ROLE-2, ...); rename a role")
        return roles

    def agent_names(self) -> list[tuple[str, RoleSpec]]:
        """(agent name, role) for every agent: `researcher` or `researcher-1`, `researcher-2`, ..."""
        agents = []
        for role in self.roles:
            for i in range(role.count):
                agents.append((_agent_name(role, i), role))
        return agents


def _agent_name(role: RoleSpec, i: int) -> str:
    return role.name if role.count == 1 else f"{role.name}-{i + 1}"


def load_org(path: Path | str) -> OrgSpec:
    """The org file at `path`, checked: its keys and values, and each role's prompt files (a file next to it)."""
    org = load_toml_model(path, OrgSpec)
    for i, role in enumerate(org.roles):
        for j, prompt in enumerate(role.prompt):
            key = f"{path}: roles.{i}.prompt.{j}"
            if not prompt.strip() or "\x00" in prompt:
                raise ConfigError(f"{key}: {prompt!r} is not a file name")
            if Path(prompt).is_absolute() or prompt.startswith("~") or ".." in Path(prompt).parts:
                raise ConfigError(f"{key}: {prompt!r} must be a file next to the org file (relative, not climbing "
                                  "out of its folder)")
            found = Path(path).parent / prompt
            if found.is_dir():
                raise ConfigError(f"{key}: {prompt!r} is a directory, not a markdown file")
            if not found.is_file():
                raise ConfigError(f"{key}: no file {prompt!r} next to the org file")
    return org


# Skills -----------------------------------------------------------------------
class SkillSpec(Strict):
    """A skill's SKILL.md front matter: what an agent sees before it loads the skill (the format Claude Code
    and Codex read: a name of lowercase letters, digits and hyphens, and a description of when to use it)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # other keys (allowed-tools, ...) pass on as they are

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    description: str = Field(min_length=1, max_length=1024)


@dataclass
class Skill:
    """A skill folder: its front matter, its instructions (SKILL.md after the front matter) and its folder."""

    spec: SkillSpec
    body: str
    folder: Path

    @property
    def name(self) -> str:
        return self.spec.name

    def install(self, into: Path) -> None:
        """A real copy of the skill's folder as `into/NAME`, replacing what was there."""
        shutil.rmtree(into / self.name, ignore_errors=True)
        shutil.copytree(self.folder, into / self.name, ignore=shutil.ignore_patterns("__pycache__"))

    def files(self) -> list[str]:
        """The files beside SKILL.md (scripts, references), relative to the folder."""
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*")
                      if p.is_file() and p.name != "SKILL.md" and "__pycache__" not in p.parts)


def parse_skill(text: str, where: str, folder: Path) -> Skill:
    """A SKILL.md's text as a Skill; a ConfigError naming `where` and what is wrong otherwise."""
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None) \
        if lines and lines[0].strip() == "---" else None
    if end is None:
        raise ConfigError(f"{where}: no front matter (a first line `---`, then `name:` and `description:`, "
                          "then `---`)")
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: front matter is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: front matter must be `key: value` lines")
    return Skill(validate(SkillSpec, meta, where), "\n".join(lines[end + 1:]).strip(), folder)


def load_skill(folder: Path, where: Path | str | None = None) -> Skill:
    """The skill in `folder` (`where`: the spec that names it, for the error)."""
    prefix = f"{where}: skill {folder}" if where is not None else f"skill {folder}"
    path = folder / "SKILL.md"
    if not folder.is_dir():
        raise ConfigError(f"{prefix}: no such folder")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{prefix}: no SKILL.md in it") from None
    except IsADirectoryError:
        raise ConfigError(f"{prefix}: SKILL.md is a directory") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{prefix}: SKILL.md is not UTF-8 text (byte {err.start})") from None
    return parse_skill(text, f"{path}", folder)


BUILTIN_SKILLS = Path(__file__).parent / "templates" / "skills"  # `builtin:NAME` in an org's skills
BUILTIN = "builtin:"


def skill_folder(entry: str) -> str:
    """Where a skill of an org's `skills` lives in a program, relative to its root: `builtin:NAME` in
    `skills/NAME` (init copies it there), any other entry where it is named."""
    return f"skills/{entry.removeprefix(BUILTIN)}" if entry.startswith(BUILTIN) else entry


def org_skills(org: OrgSpec, org_file: Path) -> dict[str, Skill]:
    """Every skill the org names, by its entry (`builtin:NAME` or a folder relative to the org file), each
    checked: a folder that is not next to the org file, an unknown built-in, a missing SKILL.md or two skills
    of one name are one ConfigError each."""
    found: dict[str, Skill] = {}
    for role in org.roles:
        for entry in role.skills:
            if entry in found:
                continue
            if entry.startswith(BUILTIN):
                name = entry.removeprefix(BUILTIN)
                if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not (BUILTIN_SKILLS / name).is_dir():
                    known = ", ".join(sorted(p.name for p in BUILTIN_SKILLS.iterdir() if p.is_dir()))
                    raise ConfigError(f"{org_file}: roles.{role.name}.skills: no built-in skill {name!r} "
                                      f"(built in: {known})")
                found[entry] = load_skill(BUILTIN_SKILLS / name, org_file)
                continue
            if Path(entry).is_absolute() or ".." in Path(entry).parts:
                raise ConfigError(f"{org_file}: roles.{role.name}.skills: {entry} must be a folder next to the "
                                  "org file")
            found[entry] = load_skill(org_file.parent / entry, org_file)
        names = [found[r].name for r in role.skills]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{org_file}: roles.{role.name}.skills: two skills named {twice[0]!r}")
    return found
