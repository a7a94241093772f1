"""Function declarations in ``tools``: the FunctionDeclaration rules, and the OpenAI -> Gemini mapping.

Rules (FunctionDeclaration, Vertex AI REST v1, read 2026-12-04 through the documentation search:
https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/Tool#FunctionDeclaration
and the generated client references that quote it, e.g.
https://docs.cloud.google.com/ruby/docs/reference/google-cloud-ai_platform-v1/latest/Google-Cloud-AIPlatform-V1-FunctionDeclaration):

- ``name`` is required; "Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or
  contain underscores, dots and dashes, with a maximum length of 64". One newer client
  reference also allows colons and 128 characters; both readings are accepted (a colon or a
  name of 65-128 characters is not rejected), so no file Vertex accepts is refused.
- ``parameters`` is a Schema ("a select subset of an OpenAPI 3.0 schema object"): only the
  Schema fields below are allowed (the REST API rejects unknown JSON fields), ``type`` is one of
  the OpenAPI types (either case), ``properties`` an object of schemas, ``required`` a list of
  property names, ``enum`` a list of strings, ``items`` a schema. ``parametersJsonSchema``
  (plain JSON Schema) is passed through unchecked.
- An OBJECT schema without properties is not documented either way: it is a warning, and
  :func:`declaration_from_openai` drops such ``parameters`` (``parameters`` is optional).

Example:
    >>> seen = []
    >>> check_tools([{"functionDeclarations": [{"name": "9lives"}]}], lambda *a, **k: seen.append(a[1]))
    >>> seen
    ['E_FUNCTION_DECLARATION_INVALID']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,127}")
SCHEMA_TYPES: Final = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
SCHEMA_KEYS: Final[frozenset[str]] = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "default",
        "items",
        "minItems",
        "maxItems",
        "enum",
        "properties",
        "propertyOrdering",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "minimum",
        "maximum",
        "additionalProperties",
        "ref",
        "defs",
    }
)
"""Schema fields of the Vertex AI REST reference (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/Schema)."""
DECLARATION_KEYS: Final = frozenset(
    {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema"}
)
TOOL_KEYS: Final = frozenset(
    {
        "functionDeclarations",
        "function_declarations",
        "googleSearch",
        "googleSearchRetrieval",
        "retrieval",
        "codeExecution",
        "urlContext",
        "enterpriseWebSearch",
        "googleMaps",
        "computerUse",
    }
)
"""Fields of Tool (https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/Tool); only
function declarations are checked further."""

Report = Callable[..., None]
"""``report(path, code, message, hint=None)``."""


def check_tools(tools: list[dict[str, Any]], report: Report) -> None:
    """Check every function declaration in ``tools`` (a list of objects); report problems."""
    for tool_index, tool in enumerate(tools):
        _unknown_keys(f"tools[{tool_index}]", tool, TOOL_KEYS, "E_TOOLS_INVALID", "in a tool", report)
        declarations = tool.get("functionDeclarations", tool.get("function_declarations"))
        if declarations is None:
            continue
        path = f"tools[{tool_index}].functionDeclarations"
        if not isinstance(declarations, list):
            report(path, "E_FUNCTION_DECLARATION_INVALID", "`functionDeclarations` is not a list")
            continue
        for index, declaration in enumerate(declarations):
            _check_declaration(f"{path}[{index}]", declaration, report)


def _unknown_keys(
    path: str, mapping: dict[str, Any], allowed: frozenset[str], code: str, where: str, report: Report
) -> None:
    """Report every key of ``mapping`` outside ``allowed`` (the REST API rejects unknown JSON fields)."""
    for key in mapping:
        if key not in allowed:
            report(
                f"{path}.{key}", code, f"unknown key {key[:40]!r} {where}", f"Allowed: {', '.join(sorted(allowed))}."
            )


def _check_declaration(path: str, declaration: Any, report: Report) -> None:
    code = "E_FUNCTION_DECLARATION_INVALID"
    if not isinstance(declaration, dict):
        report(path, code, "the function declaration is not an object")
        return
    _unknown_keys(path, declaration, DECLARATION_KEYS, code, "in a function declaration", report)
    name = declaration.get("name")
    if not isinstance(name, str) or not name:
        report(f"{path}.name", code, "the function declaration has no `name`")
    elif NAME_PATTERN.fullmatch(name) is None:
        report(
            f"{path}.name",
            code,
            f"function name {name[:70]!r} breaks the naming rule",
            "Start with a letter or underscore; use only a-z, A-Z, 0-9, _ . - (at most 64 characters).",
        )
    parameters = declaration.get("parameters")
    if parameters is not None:
        _check_schema(f"{path}.parameters", parameters, report, depth=0)


def _check_schema(path: str, schema: Any, report: Report, depth: int) -> None:
    code = "E_FUNCTION_DECLARATION_INVALID"
    if depth > 64:
        return  # deeper nesting is not worth walking; the service decides
    if not isinstance(schema, dict):
        report(path, code, "the schema is not an object")
        return
    _unknown_keys(path, schema, SCHEMA_KEYS, code, "in the OpenAPI schema subset Gemini accepts", report)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in SCHEMA_TYPES):
        report(
            f"{path}.type",
            code,
            f"schema type {repr(kind[:40]) if isinstance(kind, str) else 'of JSON ' + type(kind).__name__} "
            "is not an OpenAPI type",
            "Use one of STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT (any case).",
        )
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            report(f"{path}.properties", code, "`properties` is not an object")
            properties = None
        else:
            for name, child in properties.items():
                _check_schema(f"{path}.properties.{name}", child, report, depth + 1)
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
            report(f"{path}.required", code, "`required` is not a list of property names")
        elif isinstance(properties, dict):
            missing = [item for item in required if item not in properties]
            if missing:
                report(f"{path}.required", code, f"`required` names undeclared properties: {', '.join(missing[:5])}")
    enum = schema.get("enum")
    if enum is not None and (not isinstance(enum, list) or not all(isinstance(item, str) for item in enum)):
        report(f"{path}.enum", code, "`enum` is not a list of strings")
    if "items" in schema:
        _check_schema(f"{path}.items", schema["items"], report, depth + 1)
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        for index, child in enumerate(any_of):
            _check_schema(f"{path}.anyOf[{index}]", child, report, depth + 1)
    if isinstance(kind, str) and kind.upper() == "OBJECT" and not properties and depth == 0:
        report(path, "W_EMPTY_OBJECT_SCHEMA", "`parameters` is an object schema without properties")


_DROPPED_SCHEMA_KEYS: Final = frozenset({"$schema", "strict", "$id", "$comment"})


def declaration_from_openai(function: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An OpenAI ``function`` object as a FunctionDeclaration, and the notes of what changed.

    Keeps name/description, drops ``strict``, keeps only the Schema subset of ``parameters``
    (``const`` becomes a one-value ``enum``; other JSON Schema keywords are dropped and noted),
    and drops ``parameters`` that declare an object without properties.
    """
    notes: list[str] = []
    declaration: dict[str, Any] = {}
    for key in ("name", "description"):
        if key in function:
            declaration[key] = function[key]
    if any(key not in ("name", "description", "parameters") for key in function):
        notes.append("tool_keys_dropped")
    parameters = function.get("parameters")
    if isinstance(parameters, dict):
        cleaned = _clean_schema(parameters, notes, depth=0)
        kind = cleaned.get("type")
        if isinstance(kind, str) and kind.upper() == "OBJECT" and not cleaned.get("properties"):
            notes.append("empty_parameters_dropped")
        else:
            declaration["parameters"] = cleaned
    return declaration, notes


def _clean_schema(schema: dict[str, Any], notes: list[str], depth: int) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const" and "enum" not in schema:
            cleaned["enum"] = [value] if isinstance(value, str) else value
            continue
        if key not in SCHEMA_KEYS:
            if key not in _DROPPED_SCHEMA_KEYS:
                notes.append("schema_keys_dropped")
            continue
        if depth > 64:
            cleaned[key] = value
        elif key == "properties" and isinstance(value, dict):
            cleaned[key] = {
                name: _clean_schema(child, notes, depth + 1) if isinstance(child, dict) else child
                for name, child in value.items()
            }
        elif key == "items" and isinstance(value, dict):
            cleaned[key] = _clean_schema(value, notes, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            cleaned[key] = [_clean_schema(c, notes, depth + 1) if isinstance(c, dict) else c for c in value]
        elif key == "type" and isinstance(value, list):
            # JSON Schema ["string", "null"] -> type + nullable
            kinds = [v for v in value if v != "null"]
            cleaned[key] = kinds[0] if len(kinds) == 1 else value
            if "null" in value:
                cleaned["nullable"] = True
        else:
            cleaned[key] = value
    return cleaned
