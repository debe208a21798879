"""Tasks: what an organization researches. See spec.py for the task.toml format."""

from pathlib import Path

from researchorg.errors import ConfigError
from researchorg.task.spec import Knob, MetricSpec, TaskSpec, load_task

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_tasks() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "task.toml").is_file())


def find_task(name_or_path: str) -> Path:
    """The directory of a built-in task by name, or of a task directory by path."""
    path = Path(name_or_path)
    if (path / "task.toml").is_file():
        return path.resolve()
    if (BUILTIN_DIR / name_or_path / "task.toml").is_file():
        return BUILTIN_DIR / name_or_path
    raise ConfigError(
        f"no task {name_or_path!r}: not a directory with a task.toml, "
        f"nor a built-in task ({', '.join(builtin_tasks())})"
    )


__all__ = ["Knob", "MetricSpec", "TaskSpec", "load_task", "find_task", "builtin_tasks"]
