"""The subset of Vertex AI list-filter syntax that tuning-job listings need.

A filter is terms joined by ``AND`` (or whitespace). A term is ``FIELD OP VALUE`` with
``OP`` one of ``=``, ``!=`` or ``:`` (has), values quoted or bare:

* ``labels.KEY="value"``, ``labels.KEY!=value``, ``labels.KEY:*`` (has the label),
* ``state="JOB_STATE_SUCCEEDED"`` / ``state!=JOB_STATE_FAILED``,
* ``base_model=...`` / ``baseModel=...``, ``display_name=...`` / ``tunedModelDisplayName=...``.

``OR``, ``NOT`` and parentheses are refused with a clear error (400), never silently ignored.
With ``allow_labels=False`` (server option ``--refuse-label-filter``) every ``labels.*`` term
is refused with 400 as well: Vertex's list reference documents ``filter`` without its grammar
(https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.tuningJobs/list),
so clients must survive a server that does not take label filters.

>>> matches(parse_filter('labels.team="ml" AND state=JOB_STATE_RUNNING'),
...         {"labels": {"team": "ml"}, "state": "JOB_STATE_RUNNING"})
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deploy.local.tuning_server.wire import JSON, invalid_argument

_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>!=|=|:)\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"()]+))\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s*AND\s+|\s+", re.IGNORECASE)

_FIELD_ALIASES = {
    "state": "state",
    "base_model": "baseModel",
    "baseModel": "baseModel",
    "display_name": "tunedModelDisplayName",
    "tuned_model_display_name": "tunedModelDisplayName",
    "tunedModelDisplayName": "tunedModelDisplayName",
}


@dataclass(frozen=True)
class Term:
    """One comparison: ``field`` is ``labels.KEY`` or a resource field name."""

    field: str
    op: str
    value: str


def parse_filter(text: str | None, *, allow_labels: bool = True) -> list[Term]:
    """Parse a filter string; raises ApiError(400) for anything outside the subset."""
    if not text or not text.strip():
        return []
    if re.search(r"(^|\s)(OR|NOT)(\s|$)|[()]", text):
        raise invalid_argument(f"Unsupported filter {text!r}: only terms joined by AND are supported.")
    terms: list[Term] = []
    position = 0
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None:
            raise invalid_argument(f"Invalid filter {text!r} at position {position}.")
        field = match.group("field")
        quoted = match.group("quoted")
        value = match.group("bare") if quoted is None else re.sub(r"\\(.)", r"\1", quoted)
        if not field.startswith("labels."):
            if field not in _FIELD_ALIASES:
                raise invalid_argument(f"Unsupported filter field {field!r}.")
            field = _FIELD_ALIASES[field]
        elif field == "labels.":
            raise invalid_argument('A label filter needs a key: labels.KEY="value".')
        elif not allow_labels:
            raise invalid_argument(f"Unsupported filter field {field!r}: this server does not filter by label.")
        terms.append(Term(field=field, op=match.group("op"), value=value))
        position = match.end()
        separator = _AND.match(text, position)
        if separator is not None and separator.end() > position:
            position = separator.end()
    return terms


def matches(terms: list[Term], resource: JSON) -> bool:
    """True when ``resource`` (a job's JSON view) satisfies every term."""
    return all(_matches(term, resource) for term in terms)


def _matches(term: Term, resource: JSON) -> bool:
    if term.field.startswith("labels."):
        labels = resource.get("labels") or {}
        key = term.field.removeprefix("labels.")
        actual = labels.get(key)
    else:
        actual = resource.get(term.field)
    if term.op == ":":
        if term.value == "*":
            return actual is not None
        return actual is not None and term.value in str(actual)
    equal = actual is not None and str(actual) == term.value
    return equal if term.op == "=" else not equal
