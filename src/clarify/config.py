"""Config validation against the JSON schema (defaults filled), with one-line errors.

Every Snakemake invocation validates the config before building the DAG, so this is on the
path of ``snakemake -n``: the schema is parsed once per process with libyaml where available,
and validated with jsonschema directly (``snakemake.utils.validate`` re-parses it with a
pure-Python YAML loader and imports pandas to check for a data frame).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from .errors import InputError

#: libyaml's loader where PyYAML was built with it (it is on every PyPI wheel), else the Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _key(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


#: Keys that were removed, with what to write instead: a config that still sets one is refused
#: with that pointer, not with the schema's generic "unknown key".
REMOVED_KEYS: dict[tuple[str, ...], str] = {
    ("phase_c", "compare_losses"): "removed; write one variant per loss form instead: "
                                   "variants: [{name: dr_paper, phase_c: {schedule: dr_paper}}]",
}


def removed_key_error(config: dict) -> str | None:
    """One line for the first removed key ``config`` sets (see :data:`REMOVED_KEYS`), else None."""
    for path, replacement in REMOVED_KEYS.items():
        node = config
        for part in path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return f"config key {_key(path)}: {replacement}"
    return None


def load_schema(schema_path: str | Path) -> dict:
    """The parsed schema, read once per process and file version; callers must not modify it."""
    path = Path(schema_path).resolve()
    return _parse_schema(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _parse_schema(path: Path, _mtime_ns: int) -> dict:
    return yaml.load(path.read_text(), Loader=_SAFE_LOADER)


@functools.lru_cache(maxsize=1)
def _default_filling_validator():
    """Draft 2020-12 with ``properties`` that first fill each missing key's default: the
    jsonschema FAQ's recipe (as in ``snakemake.utils.validate``), each default a fresh copy so
    that filled configs never share objects with the cached schema or with each other."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def describe_error(config: dict, schema: dict) -> str | None:
    """One line naming the offending key and what is wrong with it, or None if valid."""
    removed = removed_key_error(config)
    if removed:
        return removed
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = _key(error.absolute_path)
        prefix = "" if where == "(top level)" else where + "."
        return (f"config key {', '.join(prefix + k for k in unknown)}: unknown key "
                f"(allowed: {', '.join(allowed) or 'none yet'})")
    if error.validator == "oneOf":
        options = [s.get("const", s.get("type")) for s in error.schema["oneOf"]]
        return f"config key {_key(error.absolute_path)}: {error.instance!r} is not one of {options}"
    return f"config key {_key(error.absolute_path)}: {error.message}"


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place against the schema, filling defaults; raise a one-line error.

    The config is checked as given first, so that the error names the key the user wrote;
    then the defaults are filled (and the filled config checked again).
    """
    schema = load_schema(schema_path)
    problem = describe_error(config, schema)
    if problem is None:
        from jsonschema.exceptions import best_match

        error = best_match(_default_filling_validator()(schema).iter_errors(config))
        if error is not None:  # the config was valid: a default the schema gets wrong
            problem = f"config key {_key(error.absolute_path)}: {error.message} (the schema's default)"
    if problem:
        raise InputError(problem)
    return config


def schema_defaults(schema_path: str | Path) -> dict:
    """The config the schema's defaults make (for scripts that run outside Snakemake)."""
    def fill(node: dict):
        if node.get("type") == "object" and "properties" in node:
            return {key: fill(sub) for key, sub in node["properties"].items()}
        return node.get("default")

    return fill(copy.deepcopy(load_schema(schema_path)))


# --- The config reference (docs/config.md), written from the schema ---------------------------

def _allowed(node: dict) -> str:
    """What a key accepts, in a few words: enum values, types and bounds."""
    if "oneOf" in node:
        return " or ".join(_allowed(option) for option in node["oneOf"])
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return ", ".join(f"`{_yaml(value)}`" for value in node["enum"])
    kinds = node.get("type", "")
    words = " or ".join(kinds) if isinstance(kinds, list) else kinds
    bounds = [f"{sign} {node[key]}" for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                      ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in node]
    if kinds == "array" and "enum" in node.get("items", {}):
        words += " of " + _allowed(node["items"])
    return ", ".join([words, *bounds]) if bounds else words


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "\\<")


def config_reference(schema_path: str | Path) -> str:
    """Markdown: one table per config section, every key with its default, what it accepts and means."""
    schema = load_schema(schema_path)
    lines = ["# Configuration reference", "",
             "Generated from `workflow/schemas/config.schema.yaml` by `python -m clarify.config docs/config.md`",
             "(a test fails when it is stale). `config.yaml` holds only what differs from these defaults;",
             "the schema fills in the rest before any job runs and refuses unknown keys.", "",
             _cell(schema.get("description", "")), ""]
    for section, node in schema["properties"].items():
        lines += [f"## `{section}`", ""]
        if node.get("description"):
            lines += [_cell(node["description"]), ""]
        lines += ["| key | default | accepts | meaning |", "|---|---|---|---|"]
        lines += _rows(node.get("properties", {}), prefix="")
        lines.append("")
    return "\n".join(lines)


def _rows(properties: dict, prefix: str) -> list[str]:
    rows = []
    for key, node in properties.items():
        name = prefix + key
        if node.get("type") == "object" and "properties" in node and node.get("default") == {}:
            if node.get("description"):
                rows.append(f"| `{name}` | | | {_cell(node['description'])} |")
            rows += _rows(node["properties"], prefix=name + ".")
            continue
        default = f"`{_cell(_yaml(node['default']))}`" if "default" in node else "(required)"
        rows.append(f"| `{name}` | {default} | {_cell(_allowed(node))} | {_cell(node.get('description', ''))} |")
    return rows


if __name__ == "__main__":
    import sys

    schema_file = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
    Path(sys.argv[1]).write_text(config_reference(schema_file))
