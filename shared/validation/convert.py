"""Convert foreign tuning formats to Gemini supervised-tuning JSONL, streaming, line by line.

Formats (the ``--from`` values of ``sftpilot convert``):

- ``openai``: OpenAI chat fine-tuning JSONL ``{"messages": [{"role", "content"}], "tools"?}``.
  ``system``/``developer`` messages go to ``systemInstruction``; ``assistant`` becomes ``model``;
  list ``content`` keeps its text parts, ``image_url`` parts become ``fileData`` (gs:// and
  public http(s):// URLs) or ``inlineData`` (data: URLs); a message with ``weight: 0`` makes
  the line fail (Gemini cannot exclude one turn from training); ``tool_calls`` become
  ``functionCall`` parts and ``tool`` messages ``functionResponse`` parts of a user turn; OpenAI
  ``tools`` become ``functionDeclarations`` that pass the FunctionDeclaration rules (``tools.py``:
  ``strict`` and non-OpenAPI schema keywords dropped, an empty object schema dropped).
  Also reads the Gemini 1.0 ``messages`` format (role ``model``)
  and PaLM chat-bison (``context`` + ``messages`` with ``author``).
- ``prompt-completion``: ``{"prompt", "completion"}`` (OpenAI legacy) -> one user and one model turn.
- ``input-output``: ``{"input_text", "output_text"}`` (PaLM text-bison), also
  ``text_input``/``textInput``/``input`` with ``output`` (AI Studio) -> user and model turn.

Consecutive messages that map to the same role are merged into one turn (Gemini wants turns to
alternate). Lines already in Gemini format (they have ``contents``) are copied unchanged, except that role
``assistant`` is renamed ``model``. Legacy prompt separators and stop words are kept and noted
(``legacy_separator_kept``/``stop_sequence_kept``, printed as warnings).
A line that cannot be converted is reported with its number and the reason and left out;
nothing is guessed.

Example:
    >>> convert_example({"prompt": "2+2?", "completion": "4"}, "prompt-completion")[0]
    {'contents': [{'role': 'user', 'parts': [{'text': '2+2?'}]}, {'role': 'model', 'parts': [{'text': '4'}]}]}
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from shared.validation.errors import DatasetReadError
from shared.validation.formats import CONVERT_FORMATS, INPUT_KEYS, OUTPUT_KEYS
from shared.validation.tools import declaration_from_openai

CHUNK_BYTES: Final = 256 * 1024
MAX_LINE_BYTES: Final = 32 * 1024 * 1024

NOTE_DESCRIPTIONS: Final[dict[str, str]] = {
    "already_gemini": "already in Gemini format, copied unchanged",
    "blank_lines": "blank, skipped",
    "system_to_instruction": "system messages moved to systemInstruction",
    "turns_merged": "consecutive messages with the same role merged into one turn",
    "weight_ignored": "OpenAI `weight: 1` dropped (Gemini has no per-turn weight; every model turn is trained)",
    "tool_calls": "tool calls converted to functionCall/functionResponse parts",
    "roles_renamed": 'Gemini-format lines: role "assistant" renamed to "model" (otherwise copied unchanged)',
    "legacy_separator_kept": "WARNING: prompt ends with a legacy separator (e.g. '\\n\\n###\\n\\n', ' ->') that was "
    "kept; Gemini needs none: strip it from the data and from your prompts",
    "stop_sequence_kept": "WARNING: completion ends with a legacy stop sequence (e.g. '\\n', ' END', '###') or starts "
    "with a space that was kept; the model will learn to emit it: strip it",
    "tool_keys_dropped": "OpenAI function keys Gemini does not have (e.g. `strict`) dropped from declarations",
    "schema_keys_dropped": "JSON Schema keywords outside Gemini's OpenAPI subset dropped from function parameters",
    "empty_parameters_dropped": "object `parameters` without properties dropped (the function takes no arguments)",
}
"""What each note means; the CLI prints "N line(s): description"."""


class WritableBinary(Protocol):
    """Anything with ``write(bytes)``."""

    def write(self, data: bytes, /) -> int: ...


class ConversionError(ValueError):
    """One example cannot be converted; ``reason`` says why (reported with its line number)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ConversionFailure:
    """A line that could not be converted."""

    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"line": self.line, "reason": self.reason}


@dataclass(slots=True)
class ConversionResult:
    """What a conversion did: counts, the first failures, and notes (counts by kind)."""

    source_format: str
    lines: int = 0
    converted: int = 0
    failure_count: int = 0
    failures: list[ConversionFailure] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every non-blank line was converted."""
        return self.failure_count == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``sftpilot convert --json``)."""
        return {
            "ok": self.ok,
            "from": self.source_format,
            "lines": self.lines,
            "converted": self.converted,
            "failure_count": self.failure_count,
            "failures": [failure.to_dict() for failure in self.failures],
            "notes": dict(self.notes),
        }


def convert_stream(
    source: Any,
    sink: WritableBinary,
    source_format: str,
    *,
    max_failures: int = 100,
    progress: Callable[[int], None] | None = None,
) -> ConversionResult:
    """Convert every line of ``source`` (binary stream or iterable of byte lines) into ``sink``.

    Lists at most ``max_failures`` failures (all are counted). Raises ``ValueError`` for an
    unknown ``source_format`` and :class:`DatasetReadError` when reading fails.
    """
    if source_format not in CONVERT_FORMATS:
        raise ValueError(f"unknown format {source_format!r}; expected one of {', '.join(CONVERT_FORMATS)}")
    result = ConversionResult(source_format=source_format)
    notes = result.notes
    for line_number, line in enumerate(_iter_lines(source, progress), start=1):
        result.lines = line_number
        if line is None:
            _fail(result, line_number, f"the line is longer than {MAX_LINE_BYTES:,} bytes", max_failures)
            continue
        if not line.strip():
            notes["blank_lines"] = notes.get("blank_lines", 0) + 1
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            _fail(result, line_number, f"invalid JSON: {exc.msg}", max_failures)
            continue
        try:
            example, line_notes = convert_example(obj, source_format)
        except ConversionError as exc:
            _fail(result, line_number, exc.reason, max_failures)
            continue
        for note in line_notes:
            notes[note] = notes.get(note, 0) + 1
        sink.write(orjson.dumps(example) + b"\n")
        result.converted += 1
    return result


def _fail(result: ConversionResult, line_number: int, reason: str, max_failures: int) -> None:
    result.failure_count += 1
    if len(result.failures) < max_failures:
        result.failures.append(ConversionFailure(line_number, reason))


def _iter_lines(source: Any, progress: Callable[[int], None] | None) -> Iterator[bytes | None]:
    """Lines without their newline; ``None`` stands for a line too long to hold in memory."""
    read = getattr(source, "read", None)
    if read is None:
        for item in _as_iterable(source):
            data = bytes(item)
            yield from (piece if len(piece) <= MAX_LINE_BYTES else None for piece in data.rstrip(b"\n").split(b"\n"))
        return
    carry: list[bytes] = []
    carry_size = 0
    total = 0
    while True:
        try:
            chunk = read(CHUNK_BYTES)
        except OSError as exc:
            raise DatasetReadError("<input>", str(exc)) from exc
        if not chunk:
            break
        total += len(chunk)
        if progress is not None:
            progress(total)
        pieces = bytes(chunk).split(b"\n")
        if len(pieces) == 1:
            carry_size += len(chunk)
            carry = [] if carry_size > MAX_LINE_BYTES else [*carry, pieces[0]]
            continue
        if carry_size + len(pieces[0]) > MAX_LINE_BYTES:
            yield None
        else:
            yield b"".join([*carry, pieces[0]])
        yield from pieces[1:-1]
        carry, carry_size = [pieces[-1]], len(pieces[-1])
    if carry_size > MAX_LINE_BYTES:
        yield None
    elif carry_size:
        yield b"".join(carry)


def _as_iterable(source: Any) -> Iterable[bytes]:
    if not isinstance(source, Iterable):
        raise TypeError("convert_stream needs a binary stream or an iterable of byte lines")
    return source


# ----------------------------------------------------------------------------- examples ---


def convert_example(obj: Any, source_format: str) -> tuple[dict[str, Any], list[str]]:
    """Convert one parsed line; return the Gemini example and notes. Raises ConversionError."""
    if not isinstance(obj, dict):
        raise ConversionError(f"the line is a JSON {type(obj).__name__}, not an object")
    if "contents" in obj:
        return _gemini_line(obj)
    if source_format == "openai":
        return _from_messages(obj)
    if source_format == "prompt-completion":
        example = _from_pair(obj, ("prompt",), ("completion",))
        return example, _legacy_notes(obj["prompt"], obj["completion"])
    return _from_pair(obj, INPUT_KEYS, OUTPUT_KEYS), []


LEGACY_SEPARATORS: Final[tuple[str, ...]] = ("\n\n###\n\n", "###", " ->", "->", "\n\n")
"""Prompt separators of OpenAI's legacy prompt/completion fine-tuning guide."""
LEGACY_STOPS: Final[tuple[str, ...]] = ("\n", " END", "END", "###", "<|endoftext|>")


def _legacy_notes(prompt: str, completion: str) -> list[str]:
    """Warn (never edit: the user's data decides) about legacy separators and stop words kept."""
    notes: list[str] = []
    if prompt.endswith(LEGACY_SEPARATORS):
        notes.append("legacy_separator_kept")
    if completion.endswith(LEGACY_STOPS) or completion.startswith(" "):
        notes.append("stop_sequence_kept")
    return notes


def _gemini_line(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A Gemini-format line: copied unchanged except role "assistant" -> "model" (a common slip)."""
    contents = obj.get("contents")
    renamed = False
    if isinstance(contents, list):
        for content in contents:
            role = content.get("role") if isinstance(content, dict) else None
            if isinstance(role, str) and role.strip().lower() == "assistant":
                content["role"] = "model"
                renamed = True
    return obj, ["roles_renamed"] if renamed else ["already_gemini"]


def _from_pair(obj: dict[str, Any], input_keys: tuple[str, ...], output_keys: tuple[str, ...]) -> dict[str, Any]:
    prompt_key = next((key for key in input_keys if key in obj), None)
    answer_key = next((key for key in output_keys if key in obj), None)
    if prompt_key is None or answer_key is None:
        wanted = f"{'/'.join(input_keys)} and {'/'.join(output_keys)}"
        raise ConversionError(f"expected keys {wanted}; found {', '.join(sorted(obj)) or 'none'}")
    prompt, answer = obj[prompt_key], obj[answer_key]
    for key, value in ((prompt_key, prompt), (answer_key, answer)):
        if not isinstance(value, str):
            raise ConversionError(f"{key!r} is not a string")
        if not value.strip():
            raise ConversionError(f"{key!r} is empty")
    return {
        "contents": [
            {"role": "user", "parts": [{"text": prompt}]},
            {"role": "model", "parts": [{"text": answer}]},
        ]
    }


_MODEL_ROLES: Final = frozenset({"assistant", "model", "bot", "ai"})
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})


def _from_messages(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConversionError('expected a non-empty "messages" list')
    notes: list[str] = []
    system_texts: list[str] = []
    context = obj.get("context")
    if isinstance(context, str) and context.strip():
        system_texts.append(context)
    contents: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ConversionError(f"{where} is not an object")
        if "weight" in message:
            # OpenAI: weight 0 = do not train on this assistant message. Gemini has no per-turn
            # weight (https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/supervised-tuning/prepare-data.md.txt,
            # read 2026-12-04, documents none), so such a line is refused rather than trained on.
            if message["weight"] == 0:
                raise ConversionError(
                    f"{where} has weight 0 (not to be trained on); Gemini has no per-turn weight, so the line "
                    "was left out: end the conversation before that message, or set weight 1 to train on it"
                )
            notes.append("weight_ignored")
        role, parts = _convert_message(where, message, tool_names, notes)
        if role == "system":
            system_texts.extend(part["text"] for part in parts)
            notes.append("system_to_instruction")
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
            notes.append("turns_merged")
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise ConversionError("no user or assistant messages")
    example: dict[str, Any] = {}
    if system_texts:
        example["systemInstruction"] = {"parts": [{"text": text} for text in system_texts]}
    example["contents"] = contents
    tools = _convert_tools(obj, notes)
    if tools:
        example["tools"] = tools
    return example, sorted(set(notes))


def _convert_message(
    where: str, message: dict[str, Any], tool_names: dict[str, str], notes: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """Map one message to (gemini role or "system", parts)."""
    if "author" in message and "role" not in message:  # PaLM chat-bison
        author = message.get("author")
        role = "user" if author == "user" else "model"
    else:
        raw_role = message.get("role")
        if not isinstance(raw_role, str):
            raise ConversionError(f"{where} has no role")
        role = raw_role.strip().lower()
    content = message.get("content")
    if role in _SYSTEM_ROLES:
        text = _text_only(where, content)
        if not text:
            raise ConversionError(f"{where} (system) is empty")
        return "system", [{"text": text}]
    if role == "user":
        parts = _content_parts(where, content)
        if not parts:
            raise ConversionError(f"{where} (user) is empty")
        return "user", parts
    if role in _MODEL_ROLES:
        parts = _content_parts(where, content)
        parts.extend(_tool_call_parts(where, message, tool_names, notes))
        if not parts:
            raise ConversionError(f"{where} ({role}) is empty")
        return "model", parts
    if role in ("tool", "function"):
        notes.append("tool_calls")
        return "user", [_tool_response_part(where, message, tool_names)]
    raise ConversionError(f"{where} has unknown role {role!r}")


def _text_only(where: str, content: Any) -> str:
    parts = _content_parts(where, content)
    if any("text" not in part for part in parts):
        raise ConversionError(f"{where}: system messages can only contain text")
    return "\n".join(part["text"] for part in parts)


def _content_parts(where: str, content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise ConversionError(f"{where}.content is neither a string nor a list")
    parts: list[dict[str, Any]] = []
    for index, item in enumerate(content):
        item_where = f"{where}.content[{index}]"
        if isinstance(item, str):
            if item.strip():
                parts.append({"text": item})
            continue
        if not isinstance(item, dict):
            raise ConversionError(f"{item_where} is not an object")
        kind = item.get("type")
        if kind in ("text", "input_text", "output_text"):
            text = item.get("text")
            if not isinstance(text, str):
                raise ConversionError(f"{item_where}.text is not a string")
            if text.strip():
                parts.append({"text": text})
        elif kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media_part(item_where, url))
        elif kind == "input_audio":
            audio = item.get("input_audio")
            if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                raise ConversionError(f"{item_where}.input_audio needs base64 data")
            audio_format = audio.get("format", "wav")
            parts.append({"inlineData": {"mimeType": f"audio/{audio_format}", "data": audio["data"]}})
        else:
            raise ConversionError(f"{item_where} has unsupported content type {kind!r}")
    return parts


def _media_part(where: str, url: Any) -> dict[str, Any]:
    if not isinstance(url, str):
        raise ConversionError(f"{where}: image_url has no url")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[len("data:") :].split(";")[0]
        if ";base64" not in header or not mime or not data:
            raise ConversionError(f"{where}: only base64 data: URLs can be converted")
        return {"inlineData": {"mimeType": mime, "data": data}}
    # fileUri may be gs:// or a publicly available HTTP(S) URL (every tuning modality page, e.g.
    # https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/image, read 2026-12-04).
    if url.startswith(("gs://", "https://", "http://")):
        guessed, _ = mimetypes.guess_type(url.split("?", 1)[0].split("#", 1)[0])
        if guessed is None or not guessed.startswith("image/"):
            raise ConversionError(
                f"{where}: cannot tell the image type of {url[:80]!r} from its name; give it an extension "
                "(.png, .jpg, .webp, ...)"
            )
        return {"fileData": {"mimeType": guessed, "fileUri": url}}
    raise ConversionError(f"{where}: image URL {url[:60]!r} is neither gs://, http(s):// nor a base64 data: URL")


def _tool_call_parts(
    where: str, message: dict[str, Any], tool_names: dict[str, str], notes: list[str]
) -> list[dict[str, Any]]:
    calls: list[Any] = []
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise ConversionError(f"{where}.tool_calls is not a list")
        calls.extend(tool_calls)
    legacy = message.get("function_call")
    if legacy is not None:
        calls.append({"type": "function", "function": legacy})
    parts: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        call_where = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ConversionError(f"{call_where} has no function name")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments) if arguments.strip() else {}
            except orjson.JSONDecodeError as exc:
                raise ConversionError(f"{call_where}.function.arguments is not valid JSON") from exc
        if not isinstance(arguments, dict):
            raise ConversionError(f"{call_where}.function.arguments is not a JSON object")
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            tool_names[call["id"]] = function["name"]
        parts.append({"functionCall": {"name": function["name"], "args": arguments}})
        notes.append("tool_calls")
    return parts


def _tool_response_part(where: str, message: dict[str, Any], tool_names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name: Any = tool_names.get(call_id) if isinstance(call_id, str) else None
    name = name or message.get("name")
    if not isinstance(name, str) or not name:
        raise ConversionError(f"{where} answers no known tool call (missing tool_call_id/name)")
    content = message.get("content")
    if isinstance(content, list):
        content = "\n".join(part["text"] for part in _content_parts(where, content) if "text" in part)
    response: Any = content
    if isinstance(content, str):
        try:
            response = orjson.loads(content)
        except orjson.JSONDecodeError:
            response = content
    if not isinstance(response, dict):
        response = {"content": response}
    return {"functionResponse": {"name": name, "response": response}}


def _convert_tools(obj: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    functions: list[dict[str, Any]] = []
    tools = obj.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
                functions.append(tool["function"])
    legacy = obj.get("functions")
    if isinstance(legacy, list):
        functions.extend(function for function in legacy if isinstance(function, dict))
    declarations: list[dict[str, Any]] = []
    for function in functions:
        declaration, changes = declaration_from_openai(function)
        declarations.append(declaration)
        notes.extend(changes)
    return [{"functionDeclarations": declarations}] if declarations else []
