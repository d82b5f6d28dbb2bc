"""Config validation: Snakemake's ``validate`` (which fills defaults), with one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import InputError


def _key(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def describe_error(config: dict, schema: dict) -> str | None:
    """One line naming the offending key and what is wrong with it, or None if valid."""
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

    Snakemake's ``validate`` fills the defaults; its own message is several lines of schema
    dump, so on failure the first relevant error is re-described with the key that caused it.
    """
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    problem = describe_error(config, schema)
    if problem:
        raise InputError(problem)
    validate(config, str(schema_path), set_default=True)
    return config


def schema_defaults(schema_path: str | Path) -> dict:
    """The config the schema's defaults make (for scripts that run outside Snakemake)."""
    def fill(node: dict):
        if node.get("type") == "object" and "properties" in node:
            return {key: fill(sub) for key, sub in node["properties"].items()}
        return node.get("default")

    return fill(yaml.safe_load(Path(schema_path).read_text()))
