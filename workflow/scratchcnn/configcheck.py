"""Config problems a user can act on: which key, which file set it, what was expected.

Snakemake's own schema check prints the whole schema and the whole config after the
first error; the workflow calls :func:`problems` when that check fails and shows only this.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

#: A number in exponent form without a dot, which YAML 1.1 reads as a string (1e-4).
FLOAT_STRING = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def yaml_syntax_error(text: str) -> str | None:
    """Where the YAML ``text`` cannot be read, in one line ("line 3, column 7: expected ',' or
    ']'"), or None. Snakemake's own message for a config file names neither line nor column."""
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        message = f"{_at(exc.problem_mark)}: " if exc.problem_mark else ""
        message += exc.problem or "not valid YAML"
        if exc.context:  # what was open, and where it began: an unclosed bracket, say
            message += f" ({exc.context}" + (f" from {_at(exc.context_mark)})" if exc.context_mark else ")")
        return message
    except yaml.YAMLError as exc:
        return str(exc)
    return None


def repeated_keys(text: str) -> list[str]:
    """Keys given twice in one mapping of the YAML ``text``, one line each. YAML keeps the last
    silently: a second ``train:`` block would drop the whole first one."""
    found = []

    def walk(node, where):
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                path = f"{where}.{name}" if where else str(name)
                if name in first:
                    found.append(f"line {key.start_mark.line + 1}: {path} is given again (first on line "
                                 f"{first[name]}), and YAML would keep only the last")  # fmt: skip
                elif name is not None:
                    first[name] = key.start_mark.line + 1
                walk(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, f"{where}[{i}]")

    walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    return found


def dotted(path) -> str:
    """``train.seeds[1]`` for the parts ("train", "seeds", 1)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _has(data, path) -> bool:
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list) or part >= len(data):
                return False
        elif not isinstance(data, Mapping) or part not in data:  # Snakemake 8 passes --config as a Map
            return False
        data = data[part]
    return True


def where_set(path, files, command_line=None) -> str | None:
    """Who sets ``path`` last: ``--config`` (the ``command_line`` values) or the last of
    ``files`` (config files, in the order they are applied)."""
    if command_line and _has(command_line, path):
        return "--config"
    found = None
    for name in files:
        try:
            data = yaml.safe_load(Path(name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if _has(data, path):
            found = str(name)
    return found


def _types(schema: dict) -> set:
    """The JSON types a schema node allows (its ``type``, one name or a list)."""
    types = schema.get("type", [])
    return {types} if isinstance(types, str) else set(types)


def typed_command_line(values, schema: dict):
    """``values`` (what ``--config`` set) with its strings read as numbers or booleans where the
    schema asks for one.

    Snakemake reads a nested ``--config`` value such as ``sweep='{epochs: 2}'`` with YAML's
    BaseLoader, which leaves every scalar in it a string ('2'). Each string whose key the schema
    types as integer, number or boolean is read as YAML reads it (a number in exponent form,
    such as 1e-4, too) and kept where it then is a number or a boolean as asked; anything else
    stays as it was, for the schema check to name.
    """
    if isinstance(values, Mapping):
        props = schema.get("properties", {})
        return {k: typed_command_line(v, props.get(k, {})) for k, v in values.items()}
    if isinstance(values, list):
        return [typed_command_line(v, schema.get("items", {})) for v in values]
    if not isinstance(values, str):
        return values
    types = _types(schema)
    try:
        value = float(values) if FLOAT_STRING.match(values) else yaml.safe_load(values)
    except yaml.YAMLError:
        return values
    if isinstance(value, bool):
        return value if "boolean" in types else values
    # a number where an integer is asked stays a number, so that the check says "0.5", not "'0.5'"
    return value if isinstance(value, (int, float)) and types & {"integer", "number"} else values


def as_schema_types(data, schema: dict):
    """``data`` (already checked against ``schema``) with each number in the form its key's type
    asks for: a whole float where an integer is asked as an int (the check accepts 200.0 and
    2e2 as integers, but a step's flag would refuse '200.0'), an int where a number is asked as
    a float (``clip: 5`` and ``clip: 5.0`` are one setting, and must give one command)."""
    if isinstance(data, Mapping):
        props = schema.get("properties", {})
        return {k: as_schema_types(v, props.get(k, {})) for k, v in data.items()}
    if isinstance(data, list):
        return [as_schema_types(v, schema.get("items", {})) for v in data]
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        return data
    types = _types(schema)
    if "integer" in types and float(data).is_integer():
        return int(data)
    if types == {"number"}:
        return float(data)
    return data


def problems(data, schema: dict, files=(), command_line=None) -> list[str]:
    """One line per schema violation in ``data``, each naming the key and who set it (one of
    ``files`` or ``--config``). An unknown key lists the keys allowed beside it."""
    from jsonschema import Draft202012Validator  # Snakemake's own dependency

    lines = []
    for err in Draft202012Validator(schema).iter_errors(data):
        path = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(known), key=str):
                hint = difflib.get_close_matches(str(key), known, n=1)
                text = "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")
                text += f"; {'the keys of ' + dotted(path) if path else 'the top-level keys'} are: {', '.join(known)}"
                lines.append(_line([*path, key], text, files, command_line))
        else:
            text = err.message
            if err.validator == "not" and isinstance(err.validator_value, dict) and "const" in err.validator_value:
                text = f"{err.instance!r} is not allowed here"  # jsonschema: "... should not be valid under ..."
            if isinstance(err.schema, dict) and err.schema.get("description"):
                text += f" ({err.schema['description']})"
            lines.append(_line(path, text, files, command_line))
    return sorted(lines)  # by key


def _line(path, text, files, command_line) -> str:
    source = where_set(path, files, command_line) if path else None
    return f"{dotted(path) or '(top level)'}{f' (in {source})' if source else ''}: {text}"
