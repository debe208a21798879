"""Reading and writing knobs: top-level `NAME = value` constants in an editable file.

An edit changes only the value on the knob's line and keeps any trailing
comment, so the diff of a tuner's experiment reads like a person's.
"""

from __future__ import annotations

import ast
import json
import re
from typing import TYPE_CHECKING, Any

from researchorg.errors import ConfigError

if TYPE_CHECKING:  # annotations only: spec.py reads knobs with this module, so no import back at run time
    from researchorg.task.spec import Knob


def _line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<head>{re.escape(name)}\s*=\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(?:#.*)?)$", re.MULTILINE)


def find_constant(text: str, name: str, file: str) -> re.Match[str]:
    """The one top-level `NAME = ...` line of `file`'s `text`; ConfigError if there is none or several."""
    matches = list(_line(name).finditer(text))
    if len(matches) != 1:
        where = "no" if not matches else f"{len(matches)}"
        raise ConfigError(f"knob {name}: found {where} top-level `{name} = ...` lines in {file}")
    return matches[0]


def _find(text: str, knob: Knob) -> re.Match[str]:
    return find_constant(text, knob.name, knob.file)


def read_knob(text: str, knob: Knob) -> Any:
    raw = _find(text, knob).group("value")
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ConfigError(f"knob {knob.name}: {raw!r} in {knob.file} is not a literal value") from None


def format_value(knob: Knob, value: Any) -> str:
    """The Python literal written into the file for `value`."""
    if isinstance(value, bool):
        return repr(value)
    if knob.type == "int":
        return str(int(value))
    if knob.type == "float":
        text = f"{float(value):.3g}"
        return text if any(c in text for c in ".en") else text + ".0"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def write_knob(text: str, knob: Knob, value: Any) -> str:
    match = _find(text, knob)
    return text[: match.start("value")] + format_value(knob, value) + text[match.end("value") :]


def describe_change(knob: Knob, old: Any, new: Any) -> str:
    return f"{knob.name} {format_value(knob, old)}->{format_value(knob, new)}"
