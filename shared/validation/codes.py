"""The stable issue codes of the dataset validator, as data.

Every problem the validator reports carries one of these codes. Codes are part of the public
interface (the ``--json`` output, the report written next to a rejected dataset, events): never
rename or reuse one; add new ones instead.

``E_*`` codes are errors (the dataset is invalid), ``W_*`` codes are warnings (the dataset is
still valid). Where the tuning service's behaviour is not documented we warn rather than reject,
and the code's ``why`` says so.

Example:
    >>> CODES["E_ROLE_INVALID"].severity
    'error'
    >>> severity_of("W_FEW_EXAMPLES")
    'warning'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["error", "warning"]
ERROR: Final = "error"
WARNING: Final = "warning"


@dataclass(frozen=True, slots=True)
class IssueCode:
    """One stable code: its severity, a one-line title and the default fix hint."""

    code: str
    severity: Severity
    title: str
    hint: str
    file_level: bool = False
    """True when issues with this code concern the whole file (``line`` is ``None``)."""


_TABLE: tuple[IssueCode, ...] = (
    # --- encoding and framing -------------------------------------------------------------
    IssueCode(
        "E_EMPTY_FILE",
        ERROR,
        "the file contains no examples",
        "Write one JSON object per line; see the Gemini tuning dataset format.",
        file_level=True,
    ),
    IssueCode(
        "E_NOT_UTF8",
        ERROR,
        "the line (or file) is not valid UTF-8",
        "Re-save the file as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8 in.jsonl > out.jsonl`).",
    ),
    IssueCode(
        "E_UTF8_BOM",
        ERROR,
        "the line starts with a UTF-8 byte-order mark",
        "Remove the BOM (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' file.jsonl`); JSON parsers reject it.",
    ),
    IssueCode(
        "E_JSON_SYNTAX",
        ERROR,
        "the line is not valid JSON",
        "Each line must be one complete JSON object; check quotes, commas and brackets at the column.",
    ),
    IssueCode(
        "E_NOT_OBJECT",
        ERROR,
        "the line is JSON but not an object",
        'Each line must be an object like {"contents": [...]}.',
    ),
    IssueCode(
        "E_LINE_TOO_LONG",
        ERROR,
        "the line is longer than the validator accepts",
        "Split the example or reference large media with fileData (gs://) instead of inlineData.",
    ),
    IssueCode(
        "W_BLANK_LINE",
        WARNING,
        "blank line (skipped here; the service's handling is undocumented)",
        "Remove blank lines (e.g. `grep -v '^[[:space:]]*$' in.jsonl > out.jsonl`).",
    ),
    IssueCode(
        "W_CRLF_LINE_ENDINGS",
        WARNING,
        "the file uses Windows (CRLF) line endings",
        "Convert to LF endings (e.g. `dos2unix file.jsonl`); JSON tolerates the CR but other tools may not.",
    ),
    # --- foreign formats ------------------------------------------------------------------
    IssueCode(
        "E_FOREIGN_FORMAT",
        ERROR,
        "the data is in another tuning format, not Gemini's",
        "Convert it with `sftpilot convert IN OUT --from FORMAT`.",
    ),
    # --- example structure ----------------------------------------------------------------
    IssueCode(
        "E_UNKNOWN_KEY",
        ERROR,
        "unknown key",
        "Remove the key or fix its spelling; the format is "
        '{"systemInstruction"?, "contents": [{"role", "parts": [...]}], "tools"?}.',
    ),
    IssueCode(
        "E_CONTENTS_MISSING",
        ERROR,
        "the example has no `contents`",
        'Add "contents": [{"role": "user", "parts": [...]}, {"role": "model", "parts": [...]}].',
    ),
    IssueCode(
        "E_CONTENTS_NOT_LIST",
        ERROR,
        "`contents` is not a list",
        "`contents` must be a list of turns, each {role, parts}.",
    ),
    IssueCode(
        "E_CONTENTS_EMPTY",
        ERROR,
        "`contents` is empty",
        "Add at least one user turn followed by one model turn.",
    ),
    IssueCode(
        "E_CONTENT_NOT_OBJECT",
        ERROR,
        "a turn is not an object",
        'Each turn must be {"role": "user"|"model", "parts": [...]}.',
    ),
    IssueCode(
        "E_ROLE_INVALID",
        ERROR,
        "the role is not `user` or `model`",
        'Use "user" or "model" ("assistant" -> "model"; put system prompts in systemInstruction).',
    ),
    IssueCode(
        "E_ROLE_MISSING",
        ERROR,
        "a turn of a multi-turn example has no role",
        'Set "role": "user" or "model" on every turn; it may only be omitted in single-turn examples.',
    ),
    IssueCode(
        "W_ROLE_OMITTED",
        WARNING,
        "role omitted in a single-turn example (inferred from its position)",
        'Set the role explicitly ("user" first, "model" second); some documentation requires it.',
    ),
    IssueCode(
        "E_PARTS_MISSING",
        ERROR,
        "the turn has no `parts` list",
        'Add "parts": [{"text": "..."}].',
    ),
    IssueCode(
        "E_PARTS_EMPTY",
        ERROR,
        "`parts` is empty",
        'Add at least one part, e.g. {"text": "..."}.',
    ),
    IssueCode(
        "E_PART_NOT_OBJECT",
        ERROR,
        "a part is not an object",
        'Each part must be an object such as {"text": "..."}, not a bare string.',
    ),
    IssueCode(
        "E_PART_NO_DATA",
        ERROR,
        "the part has no data field",
        "Give the part exactly one of text, fileData, inlineData, functionCall, functionResponse.",
    ),
    IssueCode(
        "E_PART_MULTIPLE_DATA",
        ERROR,
        "the part has more than one data field",
        "Split it into one part per field (exactly one of text, fileData, inlineData, functionCall, "
        "functionResponse per part).",
    ),
    IssueCode(
        "E_TEXT_NOT_STRING",
        ERROR,
        "`text` is not a string",
        'Make the text a JSON string, e.g. {"text": "42"}.',
    ),
    IssueCode(
        "E_TEXT_EMPTY",
        ERROR,
        "`text` is empty",
        "Fill in the text or remove the part (and the turn if it has no other parts).",
    ),
    IssueCode(
        "W_TEXT_BLANK",
        WARNING,
        "`text` contains only whitespace",
        "Fill in the text or remove the part.",
    ),
    IssueCode(
        "E_FILE_DATA_INVALID",
        ERROR,
        "`fileData` is not an object",
        'Use {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/path.jpg"}}.',
    ),
    IssueCode(
        "E_FILE_URI_INVALID",
        ERROR,
        "`fileData.fileUri` is missing or not a gs:// or http(s):// URI",
        "Reference the file as gs://bucket/path or a publicly available https:// URL.",
    ),
    IssueCode(
        "E_MIME_TYPE_MISSING",
        ERROR,
        "`mimeType` is missing",
        'Add the media type, e.g. "mimeType": "image/png".',
    ),
    IssueCode(
        "E_MIME_TYPE_UNSUPPORTED",
        ERROR,
        "the media type is not supported for tuning",
        "Convert the media to a supported type of its modality (the message lists them).",
    ),
    IssueCode(
        "E_INLINE_DATA_INVALID",
        ERROR,
        "`inlineData` needs `mimeType` and non-empty base64 `data`",
        'Use {"inlineData": {"mimeType": "image/png", "data": "<base64>"}} or reference a gs:// file.',
    ),
    IssueCode(
        "E_FUNCTION_CALL_INVALID",
        ERROR,
        "`functionCall` needs a `name` and object `args`",
        'Use {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}.',
    ),
    IssueCode(
        "E_FUNCTION_RESPONSE_INVALID",
        ERROR,
        "`functionResponse` needs a `name` and an object `response`",
        'Use {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}.',
    ),
    IssueCode(
        "W_FUNCTION_PART_ROLE",
        WARNING,
        "function call/response in an unexpected turn",
        "functionCall parts belong in model turns, functionResponse parts in user turns.",
    ),
    IssueCode(
        "E_SYSTEM_INSTRUCTION_INVALID",
        ERROR,
        "`systemInstruction` does not have the shape {parts: [{text}]}",
        'Use "systemInstruction": {"parts": [{"text": "You are ..."}]} (its role is ignored).',
    ),
    IssueCode(
        "E_GENERATION_CONFIG_INVALID",
        ERROR,
        "`generationConfig` or a `mediaResolution` value is malformed",
        'Use "generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"|"..._MEDIUM"|"..._HIGH"}.',
    ),
    IssueCode(
        "E_MEDIA_RESOLUTION_MIXED",
        ERROR,
        "examples use different `mediaResolution` values (not supported in one dataset)",
        "Use the same generationConfig.mediaResolution on every line of the training and validation files.",
    ),
    IssueCode(
        "E_PART_MEDIA_RESOLUTION_UNSUPPORTED",
        ERROR,
        "per-part `mediaResolution` is not documented for this base model's family",
        'Set "generationConfig": {"mediaResolution": ...} for the example instead.',
    ),
    IssueCode(
        "E_TOO_MANY_MEDIA",
        ERROR,
        "more media of one kind in an example than the base model allows",
        "Split the example; see the per-example media limits in the README's limits table.",
    ),
    IssueCode(
        "E_FUNCTION_DECLARATION_INVALID",
        ERROR,
        "a function declaration breaks the FunctionDeclaration rules",
        'Use {"name": "get_weather", "description": "...", "parameters": {"type": "OBJECT", "properties": {...}}}.',
    ),
    IssueCode(
        "W_EMPTY_OBJECT_SCHEMA",
        WARNING,
        "a function declares an object schema without properties (the service's handling is undocumented)",
        "Remove `parameters` from a function that takes no arguments (`sftpilot convert` does this).",
    ),
    IssueCode(
        "E_TOOLS_INVALID",
        ERROR,
        "`tools` is not a list of objects",
        'Use "tools": [{"functionDeclarations": [...]}].',
    ),
    # --- turn order -----------------------------------------------------------------------
    IssueCode(
        "E_FIRST_TURN_NOT_USER",
        ERROR,
        "the first turn is not a user turn",
        "Start every example with a user turn; move instructions to systemInstruction.",
    ),
    IssueCode(
        "E_LAST_TURN_NOT_MODEL",
        ERROR,
        "the last turn is not a model turn",
        "End every example with the model answer to learn (loss is computed on model turns).",
    ),
    IssueCode(
        "W_CONSECUTIVE_SAME_ROLE",
        WARNING,
        "two consecutive turns have the same role (the service's handling is undocumented)",
        "Merge the two turns into one (put all their parts in one turn) so user and model alternate.",
    ),
    # --- per example limits and content ---------------------------------------------------
    IssueCode(
        "W_EXAMPLE_TOO_LONG",
        WARNING,
        "the example is estimated over the base model's token limit; Vertex drops such examples",
        "Shorten the example (or split the conversation) to stay under the per-example token limit.",
    ),
    IssueCode(
        "W_DUPLICATE_EXAMPLE",
        WARNING,
        "the example is an exact duplicate of an earlier line",
        "Remove duplicates unless you mean to up-weight the example.",
    ),
    # --- whole file -----------------------------------------------------------------------
    IssueCode(
        "E_TOO_FEW_EXAMPLES",
        ERROR,
        "fewer examples than the base model's documented minimum (no current model documents one)",
        "Add examples: at least the minimum, 100+ recommended.",
        file_level=True,
    ),
    IssueCode(
        "W_FEW_EXAMPLES",
        WARNING,
        "fewer than the recommended number of examples",
        "Google recommends starting with 100 examples and scaling up to thousands if needed.",
        file_level=True,
    ),
    IssueCode(
        "E_TOO_MANY_EXAMPLES",
        ERROR,
        "more training examples than the service accepts",
        "Sample the dataset down below the limit.",
        file_level=True,
    ),
    IssueCode(
        "E_TOO_MANY_VALIDATION_EXAMPLES",
        ERROR,
        "more validation examples than the service accepts",
        "Keep at most the limit (sample the validation set down).",
        file_level=True,
    ),
    IssueCode(
        "E_FILE_TOO_LARGE",
        ERROR,
        "the file is larger than the service accepts",
        "Reduce the dataset (sample it, deduplicate, move media out to gs:// fileData).",
        file_level=True,
    ),
    IssueCode(
        "E_ADAPTER_SIZE_UNSUPPORTED",
        ERROR,
        "the adapter size is not allowed for this base model",
        "Choose one of the allowed adapter sizes.",
        file_level=True,
    ),
    IssueCode(
        "W_UNKNOWN_BASE_MODEL",
        WARNING,
        "the base model is not in sftpilot's limits table; generic Gemini limits were used",
        "Check the model name (e.g. gemini-2.5-flash) or update shared/validation/limits.py.",
        file_level=True,
    ),
)

CODES: Final[dict[str, IssueCode]] = {c.code: c for c in _TABLE}
"""Every stable code, by name."""

FILE_LEVEL_CODES: Final[frozenset[str]] = frozenset(c.code for c in _TABLE if c.file_level)


def severity_of(code: str) -> Severity:
    """The severity of a code (KeyError for an unknown code: codes are never invented ad hoc)."""
    return CODES[code].severity
