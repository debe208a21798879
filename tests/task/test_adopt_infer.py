"""What adoption infers and writes, read from a repository's files (nothing is run but the interpreter)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from researchorg.task.adopt import infer, render
from researchorg.task.spec import load_task
from researchorg.world.runner import interpreter_roots


def test_the_written_task_toml_parses_whatever_the_repository_says(tmp_path):
    (tmp_path / "prepare.py").write_text("TIME_BUDGET = 60\n")
    (tmp_path / "train.py").write_text('LR = 0.1\nprint("---")\nprint(f"val_bpb: {1.0}")\n')
    (tmp_path / "pyproject.toml").write_text('[project]\ndescription = "line one\\nline \\"two\\"\\u0007\\u007f"\n')
    adopted = infer(tmp_path)
    text = render(adopted, "dir/r\nnetwork = true")  # an origin cannot break out of its comment
    parsed = tomllib.loads(text)
    assert parsed["description"] == 'line one\nline "two"\x07\x7f' and "network" not in parsed
    (tmp_path / "pyproject.toml").write_text('project = "x"\n')  # not a table: no description, no error
    assert "description" not in infer(tmp_path).fields


def test_a_run_reads_the_repository_environment_but_not_the_repository_its_editable_install_names(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(repo / ".venv")], check=True)
    site = next((repo / ".venv" / "lib").glob("python*/site-packages"))
    (site / "_editable_repo.pth").write_text(f"{repo}\n")  # what `uv sync` writes for a project it builds
    (repo / "task.toml").write_text(f'name = "t"\ncommand = "python train.py"\neditable = ["train.py"]\n'
                                    f'budget_seconds = 1\ninterpreter = "{repo / ".venv/bin/python"}"\n'
                                    '[metric]\nname = "x"\ndirection = "minimize"\n')
    roots = interpreter_roots(load_task(repo))
    assert str(site) in roots or any(str(site).startswith(r) for r in roots)
    # its prefix and site-packages, but not the repository (its untracked files, its .git) the .pth names
    assert all(not r.startswith(str(repo)) or r.startswith(str(repo / ".venv")) for r in roots), roots


def test_a_budget_the_lab_cannot_read_or_rewrite_is_refused_not_left_to_disagree(tmp_path):
    import pytest

    from researchorg.errors import ConfigError

    (tmp_path / "train.py").write_text('print("---")\nprint(f"val_bpb: {1.0}")\n')
    for line in ("TIME_BUDGET = 5 * 60\n", "TIME_BUDGET: int = 300\n"):
        (tmp_path / "prepare.py").write_text(line)
        with pytest.raises(ConfigError, match="TIME_BUDGET is not set as `TIME_BUDGET = <seconds>`"):
            infer(tmp_path, budget=2)
