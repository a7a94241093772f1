"""Google Cloud resource labels, and lineage names (which become a label value): one definition.

The rules (https://cloud.google.com/resource-manager/docs/labels-overview#requirements): a key
starts with a lowercase letter and has at most 63 lowercase letters, digits, ``_`` or ``-``; a
value has at most 63 of the same characters and may be empty. Google also allows international
lowercase letters; sftpilot accepts ASCII only, so a label is the same everywhere it is shown.
"""

from __future__ import annotations

import re
from typing import Final

LABEL_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE: Final = re.compile(r"^[a-z0-9_-]{0,63}$")
LINEAGE_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A lineage becomes the ``sftpilot-lineage`` label value: a non-empty label value starting with a letter or digit."""


def is_label_value(value: str, *, allow_empty: bool = True) -> bool:
    """True when ``value`` is a valid label value (``allow_empty=False``: and not empty)."""
    return bool(LABEL_VALUE_RE.match(value)) and (allow_empty or bool(value))
