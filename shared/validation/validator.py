"""Streaming validator for Gemini supervised-tuning JSONL, in constant memory.

One pass, one ``orjson.loads`` per line. Each line first goes through a lean fast path that
only accepts the common shape (text parts, alternating user/model turns, optional text
``systemInstruction``); anything else (media, function calls, omitted roles, any mistake) goes
to a thorough slow path that names every problem. Both paths produce the same statistics.

Memory is bounded: lines are read in 256 KiB chunks; a single line longer than
:data:`MAX_LINE_BYTES` is skipped (``E_LINE_TOO_LONG``) instead of buffered; per-example
quantities go into bounded histograms (exact below 16,384, log buckets above); duplicates are
found with a fixed-capacity open-addressing table (at most 2**21 slots = 16 MiB, sized from the
file size when known) keyed by the xxh3-64 fingerprint of the raw line. A match compares
32 + log2(slots) fingerprint bits, so a false "duplicate" needs a ~53-bit collision: expected
< 1e-4 false reports for a 1M-example file. Duplicates are byte-identical lines (a CRLF and an
LF copy differ); reformatted copies of an example are not detected. Past 3/4 of the table
(~1.5M distinct lines) detection stops and the stats say ``duplicate_detection_complete: false``.

Token estimate: ``ceil(chars / 4)`` per side plus fixed media costs (see ``limits.py``).

Rules and their severities (the service's documented behaviour decides; where it is not
documented we warn and say so in the code's title):

- errors: not UTF-8, a BOM, invalid JSON (with column), a line that is not an object, missing
  or empty ``contents``, unknown keys, roles other than ``user``/``model``, a missing role in a
  multi-turn example (a turn of only functionResponse parts is the user side, as in the official
  function-calling chat example), parts with zero or several data fields, empty text,
  ``fileData`` whose ``fileUri`` is neither gs:// nor http(s):// or without ``mimeType``,
  unsupported media types, too many images/audio/videos per example, a bad
  ``generationConfig.mediaResolution`` (or different values in one file, or a per-part value
  before Gemini 3), function declarations breaking the FunctionDeclaration rules (``tools.py``),
  a malformed ``systemInstruction``, the first turn not ``user``, the last turn not ``model``,
  too many examples, too many validation examples, a file over the size limit, an adapter size
  the model does not allow, a file in a foreign format.
- warnings: consecutive turns with the same role (undocumented: the service may merge or
  reject), an omitted role in a single-turn example (allowed by the docs; inferred as user
  then model), blank lines (skipped here; undocumented), CRLF line endings, whitespace-only
  text (ASCII whitespace), function parts in unexpected turns, exact duplicates, examples
  estimated over the per-example token limit (Vertex drops them instead of failing), fewer
  than 100 training examples (no minimum is documented), an object ``parameters`` schema
  without properties, an unknown base model.

Line numbers are 1-based; file-level issues have ``line=None``.

Example:
    >>> import io
    >>> good = b'{"contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"text":"yo"}]}]}\\n'
    >>> report = validate_stream(io.BytesIO(good * 20), ValidationOptions(role="validation"))
    >>> report.valid, report.example_count, report.error_counts
    (True, 20, {'W_DUPLICATE_EXAMPLE': 19})
"""

from __future__ import annotations

import difflib
import io
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson
from xxhash import xxh3_64_intdigest

from shared.validation.codes import CODES, ERROR, FILE_LEVEL_CODES
from shared.validation.errors import DatasetReadError
from shared.validation.formats import ForeignFormat, convert_command, detect_foreign_format
from shared.validation.limits import (
    MEDIA_TOKEN_ESTIMATES,
    MIME_TYPES_BY_KIND,
    MODEL_LIMITS,
    RESOLUTIONS,
    SUPPORTED_MIME_TYPES,
    estimate_text_tokens,
    media_kind,
    media_tokens,
    resolve_limits,
)
from shared.validation.options import ValidationOptions
from shared.validation.report import (
    EXACT_LIMIT,
    DatasetStats,
    Distribution,
    Issue,
    ValidationReport,
    bucket_key,
)
from shared.validation.tools import check_tools

MAX_LINE_BYTES: Final = 32 * 1024 * 1024
"""Longest line validated; longer ones are reported and skipped without being held in memory.
Gemini requests carry at most 20 MB of inline data (~27 MB as base64), so no valid example is
longer; the cap keeps the worst case (line + parsed copy) well inside the memory budget."""

CHUNK_BYTES: Final = 256 * 1024
"""Read size. A line inside one chunk is never longer than MAX_LINE_BYTES, so only lines spanning
chunks need the length check."""
HEAD_LINES: Final = 5
"""Non-blank lines inspected up front to recognise a foreign format or a non-JSONL file."""
PROGRESS_EVERY_BYTES: Final = 1024 * 1024

DATA_FIELDS: Final[tuple[str, ...]] = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
PART_METADATA_FIELDS: Final[frozenset[str]] = frozenset({"thought", "thoughtSignature", "videoMetadata"})
TOP_LEVEL_KEYS: Final[tuple[str, ...]] = ("contents", "systemInstruction", "tools", "generationConfig")
"""``generationConfig`` (e.g. ``mediaResolution``) ends the official image/video/document examples:
https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/image (read 2026-12-04)."""
FILE_URI_SCHEMES: Final[tuple[str, ...]] = ("gs://", "https://", "http://")
""""The fileUri ... can be the URI for a file in a Cloud Storage bucket, or it can be a publicly
available HTTP or HTTPS URL" (every modality page, e.g.
https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/image, read 2026-12-04)."""
CONTENT_KEYS: Final[tuple[str, ...]] = ("role", "parts")
SNAKE_CASE_ALIASES: Final[dict[str, str]] = {
    "system_instruction": "systemInstruction",
    "inline_data": "inlineData",
    "file_data": "fileData",
    "function_call": "functionCall",
    "function_response": "functionResponse",
    "mime_type": "mimeType",
    "file_uri": "fileUri",
    "video_metadata": "videoMetadata",
    "thought_signature": "thoughtSignature",
    "generation_config": "generationConfig",
    "media_resolution": "mediaResolution",
}
"""Protobuf JSON accepts the original snake_case field names too; we treat them as equivalent."""

TOKEN_ESTIMATE_METHOD: Final = (
    "estimate: ceil(chars/4) per side + documented per-image/per-second media figures for the model "
    "family and mediaResolution (1 minute per audio/video, 10 pages per PDF assumed); see limits.py"
)

_DEDUPE_MIN_SLOTS: Final = 1 << 12
_DEDUPE_MAX_SLOTS: Final = 1 << 21
_MISSING: Final = object()
_VALID_ROLES: Final = ("user", "model")


class ReadableBinary(Protocol):
    """Anything with ``read(n) -> bytes`` (a local file opened "rb", a GCS BlobReader, BytesIO)."""

    def read(self, size: int = ..., /) -> bytes: ...


DatasetSource = ReadableBinary | Iterable[bytes]
"""What :func:`validate_stream` reads: a binary file-like object or an iterable of byte lines."""


def validate_stream(
    source: DatasetSource,
    options: ValidationOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Validate one Gemini SFT JSONL dataset read from ``source``, streaming, in constant memory.

    ``source`` is a binary file-like object (``read(n)``) or an iterable of byte lines.
    ``progress`` is called with the number of bytes read so far, about once per MiB.
    Raises :class:`DatasetReadError` when reading fails with an ``OSError``; dataset problems
    are never raised, they are issues in the returned report.

    Example:
        >>> import io
        >>> report = validate_stream(io.BytesIO(b'{"messages": []}\\n'))
        >>> report.valid, report.foreign_format
        (False, 'openai')
    """
    options = options or ValidationOptions()
    size_hint = options.size_bytes if options.size_bytes is not None else _size_hint(source)
    return _Validator(options, size_hint=size_hint).run(source, progress)


def _size_hint(source: object) -> int | None:
    """The remaining size of an in-memory buffer or regular file, to size the duplicate table."""
    getbuffer = getattr(source, "getbuffer", None)
    tell = getattr(source, "tell", None)
    try:
        if getbuffer is not None and tell is not None:
            return max(0, len(getbuffer()) - int(tell()))
        fileno = getattr(source, "fileno", None)
        if fileno is not None:
            info = os.fstat(fileno())
            if stat.S_ISREG(info.st_mode):
                return info.st_size
    except (OSError, ValueError, TypeError, io.UnsupportedOperation):
        return None
    return None


class _OversizedLine:
    """Stands in for a line longer than MAX_LINE_BYTES (its bytes were dropped while reading)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


Line = bytes | _OversizedLine


class _SlowPath(Exception):
    """Raised inside the fast path when a line needs the thorough checker."""


_SLOW = _SlowPath()


@dataclass(slots=True)
class _Measure:
    """Per-example quantities gathered by the slow path."""

    turns: int = 0
    input_chars: int = 0
    output_chars: int = 0
    system_chars: int = 0
    has_system: bool = False
    input_extra_tokens: int = 0
    output_extra_tokens: int = 0
    media: dict[str, int] = field(default_factory=dict)
    function_calls: int = 0
    function_responses: int = 0
    resolution: str | None = None
    """The example's ``generationConfig.mediaResolution`` (None when not set)."""


@dataclass(slots=True)
class _Totals:
    """Sums and maxima over measured examples (one instance per path, merged at the end)."""

    system_examples: int = 0
    system_chars: int = 0
    input_chars: int = 0
    output_chars: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_chars_max: int = 0
    output_chars_max: int = 0
    input_tokens_max: int = 0
    output_tokens_max: int = 0


_TAG_MASK: Final = 0xFFFFFFFF00000000
_LINE_MASK: Final = 0xFFFFFFFF
_LAST_TRACKED_LINE: Final = 0xF0000000


class _DuplicateIndex:
    """Fixed-capacity open-addressing table of line fingerprints, with the first line of each.

    Each 64-bit slot holds the upper 32 bits of the line's xxh3-64 fingerprint and, in the
    lower 32 bits, the line number where it was first seen; the slot index comes from the
    fingerprint's low bits, so a match compares 32 + log2(slots) fingerprint bits. The table
    has at most 2**21 slots (16 MiB), sized from the file size when known, and accepts
    3/4 of its slots; past that (or past line 4.0e9) it stops inserting and ``complete``
    becomes False. No growth, no rehash, no per-entry Python objects.
    """

    def __init__(self, size_hint: int | None) -> None:
        slots = _DEDUPE_MAX_SLOTS
        if size_hint is not None:
            wanted = size_hint // 45  # 2 slots per line of >= 90 bytes (the shortest sensible example)
            slots = _DEDUPE_MIN_SLOTS
            while slots < wanted and slots < _DEDUPE_MAX_SLOTS:
                slots <<= 1
        self.table = memoryview(bytearray(8 * slots)).cast("Q")
        self.mask = slots - 1
        self.room = slots * 3 // 4
        self.complete = True

    def probe(self, fingerprint: int, line_number: int) -> int:
        """Look up from the home slot; return the first line of an identical fingerprint, else insert and 0."""
        table, mask = self.table, self.mask
        tag = fingerprint & _TAG_MASK
        slot = fingerprint & mask
        while True:
            entry = table[slot]
            if entry == 0:
                if self.room > 0 and line_number < _LAST_TRACKED_LINE:
                    table[slot] = tag | line_number
                    self.room -= 1
                else:
                    self.complete = False
                return 0
            if entry & _TAG_MASK == tag:
                return entry & _LINE_MASK
            slot = (slot + 1) & mask


class _Validator:
    """One validation run. Not reusable: create one per file."""

    def __init__(
        self, options: ValidationOptions, *, force_slow_path: bool = False, size_hint: int | None = None
    ) -> None:
        self.options = options
        self.limits, self.model_known = resolve_limits(options.base_model)
        self._force_slow_path = force_slow_path
        self._max_listed = options.max_errors
        self._file_issues: list[Issue] = []
        self._line_issues: list[Issue] = []
        self._listed_errors = 0
        self._listed_warnings = 0
        self.counts: dict[str, int] = {}
        self._foreign: ForeignFormat | None = None
        self._convert_command: str | None = None
        self._fatal = False
        # reading
        self.bytes_read = 0
        self.lines = 0
        self.crlf_lines = 0
        self._crlf_reported = False
        self._lines_emitted = 0
        # counters also touched by the slow path (the fast loop keeps its own locals and merges)
        self.blank_lines = 0
        self.examples = 0
        self.duplicates = 0
        self.multimodal_examples = 0
        self.media_parts: dict[str, int] = {}
        self.function_call_parts = 0
        self.function_response_parts = 0
        self.over_limit = 0
        self.over_limit_tokens = 0
        self.turns: dict[int, int] = {}
        self.resolutions: dict[str, int] = {}
        """Explicit ``generationConfig.mediaResolution`` values and their first line."""
        # The fast path only sees text, so its token counts follow from its character counts:
        # it keeps exact character histograms (values < EXACT_LIMIT); sums, maxima and token
        # histograms are derived in _stats(). Everything else (slow-path examples, long texts)
        # is booked directly in `slow` and the slow_* histograms by _accumulate().
        self.fast_system_examples = 0
        self.fast_system_chars = 0
        # Below this many characters per side a text example is counted exactly and is surely under
        # the token limit (ceil(a/4) + ceil(b/4) <= (a + b + 6) / 4); above it, _large_text_example.
        self._side_limit = min(EXACT_LIMIT, (4 * self.limits.max_tokens_per_example - 6) // 2)
        self.fast_turns = [0] * 64
        self.fast_input_chars = [0] * self._side_limit
        self.fast_output_chars = [0] * self._side_limit
        self.slow = _Totals()
        self.slow_input_chars: dict[int, int] = {}
        self.slow_output_chars: dict[int, int] = {}
        self.slow_input_tokens: dict[int, int] = {}
        self.slow_output_tokens: dict[int, int] = {}
        self.dedupe = _DuplicateIndex(options.size_bytes if size_hint is None else size_hint)

    # ----------------------------------------------------------------- issue reporting ---

    def issue(self, line: int | None, path: str, code: str, message: str, hint: str | None = None) -> None:
        """Count an issue and list it unless its severity's listing cap is reached."""
        self.counts[code] = self.counts.get(code, 0) + 1
        spec = CODES[code]
        issue = Issue(line, path, code, spec.severity, message, hint or spec.hint)
        if line is None or code in FILE_LEVEL_CODES:
            self._file_issues.append(issue)
        elif spec.severity == ERROR:
            if self._listed_errors < self._max_listed:
                self._listed_errors += 1
                self._line_issues.append(issue)
        elif self._listed_warnings < self._max_listed:
            self._listed_warnings += 1
            self._line_issues.append(issue)

    # ----------------------------------------------------------------------- reading ---

    def _batches(self, source: DatasetSource, progress: Callable[[int], None] | None) -> Iterator[list[Line]]:
        """Yield lists of complete lines (without the newline), reading in fixed-size chunks."""
        read = getattr(source, "read", None)
        if read is None:
            yield from self._batches_from_iterable(source)  # type: ignore[arg-type]
            return
        carry: list[bytes] = []
        carry_size = 0
        oversized = False
        next_progress = PROGRESS_EVERY_BYTES
        previous_ended_with_cr = False
        while True:
            try:
                chunk = read(CHUNK_BYTES)
            except OSError as exc:
                raise DatasetReadError(self.options.source_name or "<stream>", str(exc)) from exc
            if not chunk:
                break
            if not isinstance(chunk, bytes):
                if isinstance(chunk, (bytearray, memoryview)):
                    chunk = bytes(chunk)
                else:
                    raise TypeError("validate_stream needs a binary stream (open the file with 'rb')")
            self.bytes_read += len(chunk)
            if progress is not None and self.bytes_read >= next_progress:
                progress(self.bytes_read)
                next_progress = self.bytes_read + PROGRESS_EVERY_BYTES
            if previous_ended_with_cr and chunk[:1] == b"\n":
                self._note_crlf(self._lines_emitted + 1, 1)
            previous_ended_with_cr = chunk[-1:] == b"\r"
            if b"\r" in chunk:  # a one-byte search is a memchr; "\r\n" in chunk is much slower
                first = chunk.find(b"\r\n")
                if first != -1:
                    line = self._lines_emitted + 1 + chunk.count(b"\n", 0, first)
                    self._note_crlf(line, chunk.count(b"\r\n"))
            lines: list[Line] = chunk.split(b"\n")  # type: ignore[assignment]
            if len(lines) == 1:
                carry_size += len(chunk)
                if not oversized:
                    carry.append(chunk)
                    if carry_size > MAX_LINE_BYTES:
                        oversized, carry = True, []
                continue
            head = lines[0]
            assert isinstance(head, bytes)
            if oversized:
                lines[0] = _OversizedLine(carry_size + len(head))
            elif carry:
                carry.append(head)
                lines[0] = b"".join(carry)
                if carry_size + len(head) > MAX_LINE_BYTES:
                    lines[0] = _OversizedLine(carry_size + len(head))
            tail = lines.pop()
            assert isinstance(tail, bytes)
            carry, carry_size, oversized = [tail], len(tail), False
            if carry_size > MAX_LINE_BYTES:
                oversized, carry = True, []
            self._lines_emitted += len(lines)
            yield lines
        if progress is not None:
            progress(self.bytes_read)
        if oversized:
            self._lines_emitted += 1
            yield [_OversizedLine(carry_size)]
        elif carry_size:
            self._lines_emitted += 1
            yield [b"".join(carry)]

    def _batches_from_iterable(self, source: Iterable[bytes]) -> Iterator[list[Line]]:
        """Each item is one line (a trailing newline is removed; embedded newlines split it)."""
        batch: list[Line] = []
        for item in source:
            if not isinstance(item, (bytes, bytearray, memoryview)):
                raise TypeError("validate_stream needs bytes lines (open the file with 'rb')")
            data = bytes(item)
            self.bytes_read += len(data)
            if data.endswith(b"\n"):
                data = data[:-1]
            for piece in data.split(b"\n"):
                if piece.endswith(b"\r"):
                    self._note_crlf(self._lines_emitted + len(batch) + 1, 1)
                batch.append(piece if len(piece) <= MAX_LINE_BYTES else _OversizedLine(len(piece)))
            if len(batch) >= 256:
                self._lines_emitted += len(batch)
                yield batch
                batch = []
        if batch:
            self._lines_emitted += len(batch)
            yield batch

    def _note_crlf(self, line: int, count: int) -> None:
        self.crlf_lines += count
        if not self._crlf_reported:
            self._crlf_reported = True
            self.issue(line, "", "W_CRLF_LINE_ENDINGS", "the file uses Windows (CRLF) line endings")

    # -------------------------------------------------------------------------- run ---

    def run(self, source: DatasetSource, progress: Callable[[int], None] | None) -> ValidationReport:
        """Validate everything ``source`` yields and build the report."""
        batches = self._batches(source, progress)
        pending = self._read_head(batches)
        if self._fatal:
            pass
        elif self._foreign is not None:
            self._count_foreign(itertools.chain(pending, batches))
        else:
            self._validate_lines(itertools.chain(pending, batches))
        return self._finish()

    def _read_head(self, batches: Iterator[list[Line]]) -> list[list[Line]]:
        """Read the first few non-blank lines; detect encodings, non-JSONL files, foreign formats."""
        pending: list[list[Line]] = []
        head: list[tuple[int, bytes]] = []
        line_number = 0
        for batch in batches:
            pending.append(batch)
            for line in batch:
                line_number += 1
                if isinstance(line, bytes) and line.strip() and len(head) < HEAD_LINES:
                    head.append((line_number, line))
            if len(head) >= HEAD_LINES:
                break
        if not pending:
            return pending
        first = pending[0][0]
        if isinstance(first, bytes):
            if first.startswith(b"\xef\xbb\xbf"):
                self.issue(1, "", "E_UTF8_BOM", "the file starts with a UTF-8 byte-order mark (BOM)")
                pending[0][0] = first[3:]
                if head and head[0][0] == 1:
                    head[0] = (1, first[3:])
            elif self._detect_binary(first):
                return pending
        if head:
            first_number, first_line = head[0]
            if first_line.strip() in (b"{", b"["):
                self._fatal = True
                self.issue(
                    first_number,
                    "",
                    "E_JSON_SYNTAX",
                    "the file looks like pretty-printed JSON (one object spread over several lines), not JSONL",
                    "Write one JSON object per line, e.g. `jq -c '.[]' in.json > out.jsonl` for a JSON array "
                    "or `jq -c . in.json > out.jsonl` for a stream of objects.",
                )
                return pending
        self._detect_foreign(head)
        return pending

    def _detect_binary(self, first: bytes) -> bool:
        """Recognise files that are not UTF-8 text at all; report once and stop (fatal)."""
        signatures = (
            (b"\xff\xfe\x00\x00", "UTF-32 (little-endian) text"),
            (b"\x00\x00\xfe\xff", "UTF-32 (big-endian) text"),
            (b"\xff\xfe", "UTF-16 (little-endian) text"),
            (b"\xfe\xff", "UTF-16 (big-endian) text"),
            (b"\x1f\x8b", "a gzip-compressed file"),
            (b"PK\x03\x04", "a ZIP archive"),
            (b"PAR1", "a Parquet file"),
        )
        kind = next((name for magic, name in signatures if first.startswith(magic)), None)
        if kind is None and b"\x00" in first[:4096]:
            kind = "UTF-16 text without a byte-order mark, or a binary file"
        if kind is None:
            return False
        self._fatal = True
        hint = {
            "a gzip-compressed file": "Decompress it first (`gunzip file.jsonl.gz`); Vertex reads plain JSONL.",
            "a ZIP archive": "Extract the JSONL file from the archive.",
            "a Parquet file": "Export it as JSONL, one example per line.",
        }.get(kind, "Re-save the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`).")
        self.issue(1, "", "E_NOT_UTF8", f"the file looks like {kind}, not UTF-8 JSONL", hint)
        return True

    def _detect_foreign(self, head: list[tuple[int, bytes]]) -> None:
        """If most of the first lines are one foreign format, report that once for the whole file."""
        found: list[tuple[int, ForeignFormat]] = []
        parsed = 0
        for line_number, line in head:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            parsed += 1
            fmt = detect_foreign_format(obj)
            if fmt is not None:
                found.append((line_number, fmt))
        if not found:
            return
        names = [fmt.name for _, fmt in found]
        top = max(set(names), key=names.count)
        if names.count(top) * 2 <= parsed:
            return  # a mostly-Gemini file: the foreign lines get line-level errors
        line_number, fmt = next(item for item in found if item[1].name == top)
        self._foreign = fmt
        self._convert_command = convert_command(fmt, self.options.source_name)
        self.issue(
            None,
            "",
            "E_FOREIGN_FORMAT",
            f"this file is in {fmt.description}, not Gemini format (detected from line {line_number}); "
            "its lines were not validated one by one",
            f"Convert it: `{self._convert_command}`, then validate the output.",
        )

    def _count_foreign(self, batches: Iterable[list[Line]]) -> None:
        for batch in batches:
            self.lines += len(batch)
            for line in batch:
                if isinstance(line, bytes) and not line.strip():
                    self.blank_lines += 1
                else:
                    self.examples += 1

    # --------------------------------------------------------------------- hot loop ---

    def _validate_lines(self, batches: Iterable[list[Line]]) -> None:
        """The per-line loop. Kept flat and on locals: it must stay within 2x of bare orjson.loads.

        Per line: parse, fingerprint (one table read, usually one write), then the fast path;
        any exception inside the fast path (a missing key, a wrong type, an unexpected shape)
        hands the parsed object to the slow path, which reports and measures it.
        """
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        fingerprint_of = xxh3_64_intdigest
        dedupe = self.dedupe
        table, mask, room = dedupe.table, dedupe.mask, dedupe.room
        tag_mask = _TAG_MASK
        side_limit = self._side_limit
        # Exact counts in lists indexed by value (cheaper than dict updates); see _stats().
        turn_counts, input_counts, output_counts = self.fast_turns, self.fast_input_chars, self.fast_output_chars
        short_turns = len(turn_counts)
        force_slow = self._force_slow_path
        slow_errors = (KeyError, TypeError, AttributeError, _SlowPath)

        line_number = examples = 0
        system_examples = system_chars_sum = 0

        for batch in batches:
            if line_number >= _LAST_TRACKED_LINE:
                room = 0
            for line in batch:
                line_number += 1
                try:
                    obj = loads(line)  # type: ignore[arg-type]
                except decode_error as exc:
                    dedupe.room = room
                    self._bad_line(line_number, line, exc)
                    room = dedupe.room
                    continue
                examples += 1

                fingerprint = fingerprint_of(line)  # type: ignore[arg-type]
                slot = fingerprint & mask
                if not table[slot]:
                    if room:
                        table[slot] = fingerprint & tag_mask | line_number
                        room -= 1
                    else:
                        dedupe.complete = False
                else:
                    dedupe.room = room
                    first = dedupe.probe(fingerprint, line_number)
                    room = dedupe.room
                    if first:
                        self._duplicate(line_number, first)

                try:
                    if force_slow:
                        raise _SLOW
                    contents = obj["contents"]
                    key_count = len(obj)
                    system_chars = 0
                    if key_count != 1:
                        system = obj["systemInstruction"]
                        if key_count != 2:
                            raise _SLOW
                        for part in system["parts"]:
                            text = part["text"]
                            if (text < "!" and (not text or text.isspace())) or len(part) != 1:
                                raise _SLOW
                            system_chars += len(text)
                        if not system_chars or (len(system) != 1 and (len(system) != 2 or "role" not in system)):
                            raise _SLOW
                    turns = len(contents)
                    if type(contents) is not list or turns & 1 or not turns:
                        raise _SLOW
                    input_chars = system_chars
                    output_chars = 0
                    expect_user = True
                    for content in contents:
                        parts = content["parts"]
                        role = content["role"]
                        if len(content) != 2:
                            raise _SLOW
                        chars = 0
                        for part in parts:
                            text = part["text"]
                            if (text < "!" and (not text or text.isspace())) or len(part) != 1:
                                raise _SLOW
                            chars += len(text)
                        if not chars:
                            raise _SLOW
                        if expect_user:
                            if role != "user":
                                raise _SLOW
                            input_chars += chars
                            expect_user = False
                        else:
                            if role != "model":
                                raise _SLOW
                            output_chars += chars
                            expect_user = True
                except slow_errors:
                    dedupe.room = room
                    self._slow_example(line_number, obj)
                    room = dedupe.room
                    continue

                if turns < short_turns:
                    turn_counts[turns] += 1
                else:
                    self.turns[turns] = self.turns.get(turns, 0) + 1
                if system_chars:
                    system_examples += 1
                    system_chars_sum += system_chars
                # Sums and maxima come from these exact histograms at the end; large values
                # (rare) go through a method that buckets them and keeps their exact sums.
                if input_chars < side_limit and output_chars < side_limit:
                    input_counts[input_chars] += 1
                    output_counts[output_chars] += 1
                else:
                    self._large_text_example(line_number, input_chars, output_chars)

        dedupe.room = room
        self.lines = line_number
        self.examples += examples
        self.fast_system_examples = system_examples
        self.fast_system_chars = system_chars_sum

    def _large_text_example(self, line_number: int, input_chars: int, output_chars: int) -> None:
        """A fast-path example with a side too long for the exact histograms: book it like the slow path."""
        self._accumulate(
            line_number,
            input_chars,
            output_chars,
            estimate_text_tokens(input_chars),
            estimate_text_tokens(output_chars),
        )

    def _accumulate(
        self, line_number: int, input_chars: int, output_chars: int, input_tokens: int, output_tokens: int
    ) -> None:
        """Book one example's sizes in the directly-counted totals and histograms; check its length."""
        totals = self.slow
        totals.input_chars += input_chars
        totals.output_chars += output_chars
        totals.input_tokens += input_tokens
        totals.output_tokens += output_tokens
        totals.input_chars_max = max(totals.input_chars_max, input_chars)
        totals.output_chars_max = max(totals.output_chars_max, output_chars)
        totals.input_tokens_max = max(totals.input_tokens_max, input_tokens)
        totals.output_tokens_max = max(totals.output_tokens_max, output_tokens)
        for histogram, value in (
            (self.slow_input_chars, input_chars),
            (self.slow_output_chars, output_chars),
            (self.slow_input_tokens, input_tokens),
            (self.slow_output_tokens, output_tokens),
        ):
            key = bucket_key(value)
            histogram[key] = histogram.get(key, 0) + 1
        self._check_length(line_number, input_tokens, output_tokens)

    def _duplicate(self, line_number: int, first_line: int) -> None:
        self.duplicates += 1
        where = f"line {first_line}" if first_line > 0 else "an earlier line"
        self.issue(line_number, "", "W_DUPLICATE_EXAMPLE", f"this example is identical to {where}")

    def _check_length(self, line_number: int, input_tokens: int, output_tokens: int) -> None:
        """Warn (Vertex drops, does not fail) when an example is estimated over the token limit."""
        tokens = input_tokens + output_tokens
        limit = self.limits.max_tokens_per_example
        if tokens <= limit:
            return
        self.over_limit += 1
        self.over_limit_tokens += tokens
        self.issue(
            line_number,
            "",
            "W_EXAMPLE_TOO_LONG",
            f"about {tokens:,} tokens (estimated) > {limit:,} allowed per example for "
            f"{self.limits.name}; Vertex will drop this example",
        )

    # ------------------------------------------------------------ unparseable lines ---

    def _bad_line(self, line_number: int, line: Line, exc: orjson.JSONDecodeError) -> None:
        if isinstance(line, _OversizedLine):
            self.examples += 1
            self.issue(
                line_number,
                "",
                "E_LINE_TOO_LONG",
                f"the line is {line.size:,} bytes; sftpilot validates lines up to {MAX_LINE_BYTES:,} bytes",
            )
            return
        if not line.strip():
            self.blank_lines += 1
            self.issue(line_number, "", "W_BLANK_LINE", "blank line")
            return
        if line.startswith(b"\xef\xbb\xbf"):
            self.issue(line_number, "", "E_UTF8_BOM", "the line starts with a UTF-8 byte-order mark (BOM)")
            self._reparse(line_number, line[3:])
            return
        self.examples += 1
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            byte = line[bad.start]
            self.issue(
                line_number,
                "",
                "E_NOT_UTF8",
                f"invalid UTF-8 byte 0x{byte:02x} at byte {bad.start + 1} of the line ({bad.reason})",
            )
            return
        position = min(max(exc.pos, 0), len(line))
        while position < len(line) - 1 and line[position] in b" \t\r":  # point at the token, not the space
            position += 1
        column = len(line[:position].decode("utf-8", errors="replace")) + 1
        self.issue(
            line_number,
            "",
            "E_JSON_SYNTAX",
            f"invalid JSON at column {column}: {exc.msg}",
            _json_hint(line, exc.msg),
        )

    def _reparse(self, line_number: int, line: bytes) -> None:
        """Validate a line after removing a defect already reported (a mid-file BOM)."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self._bad_line(line_number, line, exc)
            return
        self.examples += 1
        first = self.dedupe.probe(xxh3_64_intdigest(line), line_number)
        if first:
            self._duplicate(line_number, first)
        self._slow_example(line_number, obj)

    # -------------------------------------------------------------------- slow path ---

    def _slow_example(self, line_number: int, obj: Any) -> None:
        measure = self._inspect(line_number, obj)
        if measure is None:
            return
        totals = self.slow
        self.turns[measure.turns] = self.turns.get(measure.turns, 0) + 1
        if measure.has_system:
            totals.system_examples += 1
        totals.system_chars += measure.system_chars
        input_chars = measure.input_chars + measure.system_chars
        self._accumulate(
            line_number,
            input_chars,
            measure.output_chars,
            estimate_text_tokens(input_chars) + measure.input_extra_tokens,
            estimate_text_tokens(measure.output_chars) + measure.output_extra_tokens,
        )
        if measure.media:
            self.multimodal_examples += 1
            for kind, count in measure.media.items():
                self.media_parts[kind] = self.media_parts.get(kind, 0) + count
        self.function_call_parts += measure.function_calls
        self.function_response_parts += measure.function_responses

    def _inspect(self, line_number: int, obj: Any) -> _Measure | None:
        """Check one parsed line thoroughly, reporting every problem; measure it if it has contents."""
        report = self.issue
        if not isinstance(obj, dict):
            kind = _json_type(obj)
            hint = None
            if isinstance(obj, list) and obj and all(isinstance(item, dict) for item in obj):
                hint = "This line is a JSON array of examples: write one example per line (`jq -c '.[]'`)."
            report(line_number, "", "E_NOT_OBJECT", f"the line is a JSON {kind}, not an object", hint)
            return None
        if "contents" not in obj:
            fmt = detect_foreign_format(obj)
            if fmt is not None:
                command = convert_command(fmt, self.options.source_name)
                report(
                    line_number,
                    "",
                    "E_FOREIGN_FORMAT",
                    f"this line is in {fmt.description}, not Gemini format",
                    f"Convert the file (`{command}`) or rewrite this line as "
                    '{"contents": [{"role": "user", ...}, {"role": "model", ...}]}.',
                )
                return None
        measure = _Measure()
        for key in obj:
            canonical = SNAKE_CASE_ALIASES.get(key, key)
            if canonical not in TOP_LEVEL_KEYS:
                _unknown_key(report, line_number, "", key, TOP_LEVEL_KEYS)
        system = _first_present(obj, "systemInstruction")
        if system is not _MISSING:
            measure.has_system = True
            measure.system_chars = self._check_system(line_number, system)
        tools = obj.get("tools", _MISSING)
        if tools is not _MISSING:
            if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
                report(line_number, "tools", "E_TOOLS_INVALID", f"`tools` is a JSON {_json_type(tools)}")
            else:
                check_tools(
                    tools, lambda path, code, message, hint=None: report(line_number, path, code, message, hint)
                )
                measure.input_extra_tokens += estimate_text_tokens(_json_length(tools))
        config = _first_present(obj, "generationConfig")
        if config is not _MISSING:
            measure.resolution = self._check_generation_config(line_number, config)
        contents = obj.get("contents", _MISSING)
        if contents is _MISSING:
            report(line_number, "contents", "E_CONTENTS_MISSING", "the example has no `contents`")
            return None
        if not isinstance(contents, list):
            report(line_number, "contents", "E_CONTENTS_NOT_LIST", f"`contents` is a JSON {_json_type(contents)}")
            return None
        if not contents:
            report(line_number, "contents", "E_CONTENTS_EMPTY", "`contents` is an empty list")
            return None
        measure.turns = len(contents)
        roles: list[str | None] = []
        for index, content in enumerate(contents):
            roles.append(self._check_content(line_number, index, content, len(contents), measure))
        self._check_turn_order(line_number, roles)
        if measure.media:
            self._check_media_counts(line_number, measure.media)
        return measure

    def _check_media_counts(self, line_number: int, media: dict[str, int]) -> None:
        """Per-example media limits of the base model's row (limits.py: [IMAGE], [AUDIO], [VIDEO])."""
        limits = self.limits
        for kind, label, limit in (
            ("image", "images", limits.max_images_per_example),
            ("audio", "audio files", limits.max_audio_per_example),
            ("video", "videos", limits.max_videos_per_example),
            ("document", "PDF documents", limits.max_documents_per_example),
        ):
            count = media.get(kind, 0)
            if limit is not None and count > limit:
                self.issue(
                    line_number,
                    "contents",
                    "E_TOO_MANY_MEDIA",
                    f"the example has {count} {label}; {limits.name} allows at most {limit} per example",
                    "Split the example into several, each within the per-example media limits.",
                )

    def _check_generation_config(self, line_number: int, config: Any) -> str | None:
        """Check ``generationConfig`` and return its ``mediaResolution`` (None when absent or bad).

        The tuning pages show only ``mediaResolution`` here; other GenerationConfig fields are
        passed through unchecked (their effect on tuning is not documented). All lines of the
        training and validation files must use the same value ([VIDEO] in limits.py).
        """
        if not isinstance(config, dict):
            self.issue(
                line_number,
                "generationConfig",
                "E_GENERATION_CONFIG_INVALID",
                f"`generationConfig` is a JSON {_json_type(config)}, not an object",
            )
            return None
        value = _first_present(config, "mediaResolution")
        if value is _MISSING:
            return None
        # Enum names are matched case-insensitively (real-world requests send "media_resolution_high").
        value = value.upper() if isinstance(value, str) else value
        if value not in RESOLUTIONS:
            self.issue(
                line_number,
                "generationConfig.mediaResolution",
                "E_GENERATION_CONFIG_INVALID",
                f"`mediaResolution` is {_short(value)}",
                f"Use one of {', '.join(RESOLUTIONS)}.",
            )
            return None
        first = self.resolutions.setdefault(value, line_number)
        if first == line_number and len(self.resolutions) > 1:
            other, other_line = next((key, line) for key, line in self.resolutions.items() if key != value)
            self.issue(
                line_number,
                "generationConfig.mediaResolution",
                "E_MEDIA_RESOLUTION_MIXED",
                f"`mediaResolution` is {value}, but line {other_line} uses {other}; "
                "the dataset must use one value throughout",
            )
        return str(value)

    def _check_system(self, line_number: int, system: Any) -> int:
        report = self.issue
        if not isinstance(system, dict):
            report(
                line_number,
                "systemInstruction",
                "E_SYSTEM_INSTRUCTION_INVALID",
                f"`systemInstruction` is a JSON {_json_type(system)}, not an object",
            )
            return 0
        for key in system:
            if SNAKE_CASE_ALIASES.get(key, key) not in ("parts", "role"):
                _unknown_key(report, line_number, "systemInstruction.", key, ("parts", "role"))
        parts = system.get("parts", _MISSING)
        if not isinstance(parts, list) or not parts:
            what = "missing" if parts is _MISSING else ("empty" if parts == [] else f"a JSON {_json_type(parts)}")
            report(
                line_number,
                "systemInstruction.parts",
                "E_SYSTEM_INSTRUCTION_INVALID",
                f"`systemInstruction.parts` is {what}; it must be a non-empty list of text parts",
            )
            return 0
        chars = 0
        for index, part in enumerate(parts):
            path = f"systemInstruction.parts[{index}]"
            if not isinstance(part, dict) or "text" not in part:
                report(
                    line_number,
                    path,
                    "E_SYSTEM_INSTRUCTION_INVALID",
                    'system instruction parts must be text parts like {"text": "..."}',
                )
                continue
            for key in part:
                if key != "text" and key not in PART_METADATA_FIELDS:
                    _unknown_key(report, line_number, f"{path}.", key, ("text",))
            chars += self._check_text(line_number, f"{path}.text", part["text"])
        return chars

    def _check_text(self, line_number: int, path: str, text: Any) -> int:
        if not isinstance(text, str):
            self.issue(line_number, path, "E_TEXT_NOT_STRING", f"`text` is a JSON {_json_type(text)}")
            return 0
        if not text:
            self.issue(line_number, path, "E_TEXT_EMPTY", "`text` is an empty string")
        elif text < "!" and text.isspace():  # as in the fast path: texts of only non-ASCII spaces pass
            self.issue(line_number, path, "W_TEXT_BLANK", "`text` contains only whitespace")
        return len(text)

    def _check_content(self, line_number: int, index: int, content: Any, turns: int, measure: _Measure) -> str | None:
        """Check one turn; return its role ("user"/"model"), inferred when omitted, or None."""
        report = self.issue
        path = f"contents[{index}]"
        if not isinstance(content, dict):
            report(line_number, path, "E_CONTENT_NOT_OBJECT", f"the turn is a JSON {_json_type(content)}")
            return None
        for key in content:
            if key not in CONTENT_KEYS:
                _unknown_key(report, line_number, f"{path}.", key, CONTENT_KEYS)
        role: str | None
        raw_role = content.get("role")
        if raw_role is None and _only_function_responses(content.get("parts")):
            # The official function-calling chat example has functionResponse turns without a
            # role: https://cloud.google.com/vertex-ai/generative-ai/docs/models/tune-function-calling
            # (read 2026-12-04). They answer the model's call, i.e. they are the user side.
            role = "user"
        elif raw_role is None:
            if turns <= 2:
                role = "user" if index == 0 else "model"
                report(
                    line_number,
                    f"{path}.role",
                    "W_ROLE_OMITTED",
                    f"role omitted; inferred as {role!r} from its position in a single-turn example",
                )
            else:
                role = None
                report(
                    line_number,
                    f"{path}.role",
                    "E_ROLE_MISSING",
                    f"turn {index + 1} of {turns} has no role",
                )
        elif raw_role in _VALID_ROLES:
            role = raw_role
        else:
            role = None
            report(
                line_number,
                f"{path}.role",
                "E_ROLE_INVALID",
                f"role {_short(raw_role)} is not valid",
                _role_hint(raw_role),
            )
        parts = content.get("parts", _MISSING)
        if parts is _MISSING or not isinstance(parts, list):
            what = "missing" if parts is _MISSING else f"a JSON {_json_type(parts)}, not a list"
            report(line_number, f"{path}.parts", "E_PARTS_MISSING", f"`parts` is {what}")
            return role
        if not parts:
            report(line_number, f"{path}.parts", "E_PARTS_EMPTY", "`parts` is an empty list")
            return role
        is_model = role == "model"
        for part_index, part in enumerate(parts):
            self._check_part(line_number, f"{path}.parts[{part_index}]", part, role, is_model, measure)
        return role

    def _check_part(
        self, line_number: int, path: str, part: Any, role: str | None, is_model: bool, measure: _Measure
    ) -> None:
        report = self.issue
        if not isinstance(part, dict):
            hint = 'Wrap the text: {"text": "..."}.' if isinstance(part, str) else None
            report(line_number, path, "E_PART_NOT_OBJECT", f"the part is a JSON {_json_type(part)}", hint)
            return
        data_keys: list[tuple[str, str]] = []
        unknown: list[str] = []
        part_resolution: str | None = None
        for key in part:
            canonical = SNAKE_CASE_ALIASES.get(key, key)
            if canonical in DATA_FIELDS:
                data_keys.append((key, canonical))
            elif canonical == "mediaResolution":
                part_resolution = self._check_part_resolution(line_number, f"{path}.{key}", part[key])
            elif canonical not in PART_METADATA_FIELDS:
                unknown.append(key)
        for key in unknown:
            _unknown_key(report, line_number, f"{path}.", key, DATA_FIELDS)
        if not data_keys:
            if not unknown:
                report(line_number, path, "E_PART_NO_DATA", "the part is an empty object")
            else:
                report(
                    line_number,
                    path,
                    "E_PART_NO_DATA",
                    "the part has none of text, fileData, inlineData, functionCall, functionResponse",
                )
            return
        if len(data_keys) > 1:
            names = ", ".join(key for key, _ in data_keys)
            report(line_number, path, "E_PART_MULTIPLE_DATA", f"the part has {len(data_keys)} data fields: {names}")
        key, canonical = data_keys[0]
        value = part[key]
        field_path = f"{path}.{key}"
        if canonical == "text":
            chars = self._check_text(line_number, field_path, value)
            if is_model:
                measure.output_chars += chars
            else:
                measure.input_chars += chars
            return
        extra = 0
        if canonical in ("fileData", "inlineData"):
            extra = self._check_media(line_number, field_path, canonical, value, measure, part_resolution)
        elif canonical == "functionCall":
            measure.function_calls += 1
            extra = self._check_function(line_number, field_path, value, "functionCall", "args", role, "model")
        else:
            measure.function_responses += 1
            extra = self._check_function(line_number, field_path, value, "functionResponse", "response", role, "user")
        if is_model:
            measure.output_extra_tokens += extra
        else:
            measure.input_extra_tokens += extra

    def _check_part_resolution(self, line_number: int, path: str, value: Any) -> str | None:
        """A per-part ``mediaResolution``: Gemini 3+ only (https://ai.google.dev/gemini-api/docs/media-resolution,
        read 2026-12-04: "per part (Gemini 3 only)"); a string or ``{"level": ...}``."""
        level = value.get("level") if isinstance(value, dict) else value
        level = level.upper() if isinstance(level, str) else level
        if not isinstance(level, str) or not level.startswith("MEDIA_RESOLUTION_"):
            self.issue(
                line_number,
                path,
                "E_GENERATION_CONFIG_INVALID",
                f"`mediaResolution` is {_short(value)}",
                f'Use one of {", ".join(RESOLUTIONS)} (or {{"level": "..."}}).',
            )
            return None
        if not self.limits.per_part_media_resolution:
            self.issue(
                line_number,
                path,
                "E_PART_MEDIA_RESOLUTION_UNSUPPORTED",
                f"per-part `mediaResolution` is documented for Gemini 3+ models only, not {self.limits.name}",
                'Set it once per example in "generationConfig": {"mediaResolution": "..."} instead, '
                "or tune a Gemini 3 model (--base-model).",
            )
        return level

    def _check_media(
        self, line_number: int, path: str, kind: str, value: Any, measure: _Measure, part_resolution: str | None
    ) -> int:
        report = self.issue
        invalid_code = "E_FILE_DATA_INVALID" if kind == "fileData" else "E_INLINE_DATA_INVALID"
        if not isinstance(value, dict):
            report(line_number, path, invalid_code, f"`{kind}` is a JSON {_json_type(value)}, not an object")
            return 0
        allowed = ("mimeType", "fileUri", "displayName") if kind == "fileData" else ("mimeType", "data", "displayName")
        for key in value:
            if SNAKE_CASE_ALIASES.get(key, key) not in allowed:
                _unknown_key(report, line_number, f"{path}.", key, allowed)
        if kind == "fileData":
            uri = _first_present(value, "fileUri")
            scheme = next((s for s in FILE_URI_SCHEMES if isinstance(uri, str) and uri.startswith(s)), None)
            if scheme is None or len(uri) <= len(scheme) or uri[len(scheme)] == "/":
                shown = "missing" if uri is _MISSING else _short(uri)
                report(line_number, f"{path}.fileUri", "E_FILE_URI_INVALID", f"`fileUri` is {shown}")
        else:
            data = value.get("data")
            if not isinstance(data, str) or not data:
                report(line_number, f"{path}.data", "E_INLINE_DATA_INVALID", "`inlineData.data` is missing or empty")
        mime = _first_present(value, "mimeType")
        if mime is _MISSING or mime == "" or mime is None:
            report(line_number, f"{path}.mimeType", "E_MIME_TYPE_MISSING", "`mimeType` is missing")
            return 0
        if not isinstance(mime, str) or mime.lower() not in SUPPORTED_MIME_TYPES:
            report(
                line_number,
                f"{path}.mimeType",
                "E_MIME_TYPE_UNSUPPORTED",
                f"media type {_short(mime)} is not supported for Gemini tuning",
                _mime_hint(mime),
            )
            return 0
        media = media_kind(mime.lower())
        measure.media[media] = measure.media.get(media, 0) + 1
        return media_tokens(media, self.limits.family, part_resolution or measure.resolution)

    def _check_function(
        self,
        line_number: int,
        path: str,
        value: Any,
        kind: str,
        payload_key: str,
        role: str | None,
        expected_role: str,
    ) -> int:
        code = "E_FUNCTION_CALL_INVALID" if kind == "functionCall" else "E_FUNCTION_RESPONSE_INVALID"
        if not isinstance(value, dict):
            self.issue(line_number, path, code, f"`{kind}` is a JSON {_json_type(value)}, not an object")
            return 0
        name = value.get("name")
        if not isinstance(name, str) or not name:
            self.issue(line_number, f"{path}.name", code, f"`{kind}.name` is missing or empty")
        payload = value.get(payload_key, _MISSING)
        required = kind == "functionResponse"
        if (payload is _MISSING and required) or (payload is not _MISSING and not isinstance(payload, dict)):
            shown = "missing" if payload is _MISSING else f"a JSON {_json_type(payload)}"
            self.issue(line_number, f"{path}.{payload_key}", code, f"`{kind}.{payload_key}` is {shown}, not an object")
        if role is not None and role != expected_role:
            self.issue(
                line_number,
                path,
                "W_FUNCTION_PART_ROLE",
                f"`{kind}` in a {role} turn (expected in {expected_role} turns)",
            )
        return estimate_text_tokens(_json_length(value))

    def _check_turn_order(self, line_number: int, roles: list[str | None]) -> None:
        first, last = roles[0], roles[-1]
        if first is not None and first != "user":
            self.issue(
                line_number,
                "contents[0].role",
                "E_FIRST_TURN_NOT_USER",
                f"the first turn is {first!r}; examples must start with a user turn",
            )
        if last is not None and last != "model":
            where = f"contents[{len(roles) - 1}].role"
            message = (
                "the example has only a user turn; add the model's answer"
                if len(roles) == 1
                else f"the last turn is {last!r}; examples must end with a model turn"
            )
            self.issue(line_number, where, "E_LAST_TURN_NOT_MODEL", message)
        for index in range(1, len(roles)):
            role = roles[index]
            if role is not None and role == roles[index - 1]:
                self.issue(
                    line_number,
                    f"contents[{index}].role",
                    "W_CONSECUTIVE_SAME_ROLE",
                    f"turns {index} and {index + 1} are both {role!r}",
                )

    # ------------------------------------------------------------------------ finish ---

    def _finish(self) -> ValidationReport:
        options, limits = self.options, self.limits
        if not self.model_known:
            self.issue(
                None,
                "baseModel",
                "W_UNKNOWN_BASE_MODEL",
                f"base model {options.base_model!r} is not in the limits table; "
                f"used generic limits (known: {', '.join(MODEL_LIMITS)})",
            )
        if options.adapter_size is not None and options.adapter_size not in limits.adapter_sizes:
            allowed = ", ".join(str(size) for size in limits.adapter_sizes)
            self.issue(
                None,
                "adapterSize",
                "E_ADAPTER_SIZE_UNSUPPORTED",
                f"adapter size {options.adapter_size} is not allowed for {limits.name} (allowed: {allowed})",
                f"Use one of {allowed}.",
            )
        size = max(self.bytes_read, options.size_bytes or 0)
        if size > limits.max_file_bytes:
            self.issue(
                None,
                "",
                "E_FILE_TOO_LARGE",
                f"the file is {size:,} bytes; the limit is {limits.max_file_bytes:,} bytes",
            )
        if not self._fatal and self._foreign is None:
            self._check_counts()
        stats = self._stats()
        # CRLF is noticed when a chunk is read, before earlier lines are checked: restore file order.
        issues = self._file_issues + sorted(self._line_issues, key=_issue_line)
        valid = not any(CODES[code].severity == ERROR for code in self.counts)
        return ValidationReport(
            valid=valid,
            issues=issues,
            error_counts=dict(self.counts),
            stats=stats,
            options=options,
            limits=limits,
            base_model_known=self.model_known,
            foreign_format=self._foreign.name if self._foreign else None,
            convert_command=self._convert_command,
        )

    def _check_counts(self) -> None:
        options, limits, examples = self.options, self.limits, self.examples
        if examples == 0:
            message = "the file is empty" if self.bytes_read == 0 else "the file has only blank lines"
            self.issue(None, "", "E_EMPTY_FILE", message)
            return
        if options.role == "training":
            if limits.min_examples and examples < limits.min_examples:
                self.issue(
                    None,
                    "",
                    "E_TOO_FEW_EXAMPLES",
                    f"{examples} examples; {limits.name} needs at least {limits.min_examples} "
                    f"({limits.recommended_min_examples}+ recommended)",
                )
            elif examples < limits.recommended_min_examples:
                self.issue(
                    None,
                    "",
                    "W_FEW_EXAMPLES",
                    f"{examples} examples; Google recommends starting with {limits.recommended_min_examples} "
                    "(no minimum is documented)",
                )
            # "1M text-only or 300K multimodal examples": read as a cap on all examples and a
            # separate cap on the multimodal ones (a 1 % multimodal set is not held to 300K).
            if examples > limits.max_training_examples_text:
                self.issue(
                    None,
                    "",
                    "E_TOO_MANY_EXAMPLES",
                    f"{examples:,} examples; the limit is {limits.max_training_examples_text:,}",
                )
            if self.multimodal_examples > limits.max_training_examples_multimodal:
                self.issue(
                    None,
                    "",
                    "E_TOO_MANY_EXAMPLES",
                    f"{self.multimodal_examples:,} multimodal examples; the limit is "
                    f"{limits.max_training_examples_multimodal:,}",
                )
        elif examples > limits.max_validation_examples:
            self.issue(
                None,
                "",
                "E_TOO_MANY_VALIDATION_EXAMPLES",
                f"{examples:,} validation examples; the limit is {limits.max_validation_examples:,}",
                f"Keep at most {limits.max_validation_examples:,} examples in the validation file.",
            )

    def _fast_totals(self) -> _Totals:
        """Fast-path sums and maxima, from its exact character histograms."""
        totals = _Totals(system_examples=self.fast_system_examples, system_chars=self.fast_system_chars)
        for key, count in _nonzero(self.fast_input_chars).items():
            totals.input_chars += key * count
            totals.input_tokens += estimate_text_tokens(key) * count
            totals.input_chars_max = max(totals.input_chars_max, key)
        for key, count in _nonzero(self.fast_output_chars).items():
            totals.output_chars += key * count
            totals.output_tokens += estimate_text_tokens(key) * count
            totals.output_chars_max = max(totals.output_chars_max, key)
        totals.input_tokens_max = estimate_text_tokens(totals.input_chars_max)
        totals.output_tokens_max = estimate_text_tokens(totals.output_chars_max)
        return totals

    def _stats(self) -> DatasetStats:
        fast, slow = self._fast_totals(), self.slow
        turns = _merge(_nonzero(self.fast_turns), self.turns)
        fast_input_chars, fast_output_chars = _nonzero(self.fast_input_chars), _nonzero(self.fast_output_chars)
        measured = sum(turns.values())
        turns_sum = sum(count * n for count, n in turns.items())
        input_tokens = _derive_token_histogram(fast_input_chars, self.slow_input_tokens)
        output_tokens = _derive_token_histogram(fast_output_chars, self.slow_output_tokens)
        return DatasetStats(
            lines=self.lines,
            blank_lines=self.blank_lines,
            examples=self.examples,
            measured_examples=measured,
            bytes_read=self.bytes_read,
            crlf_lines=self.crlf_lines,
            turns_min=min(turns) if turns else 0,
            turns_mean=round(turns_sum / measured, 2) if measured else 0.0,
            turns_max=max(turns) if turns else 0,
            input_chars=Distribution.from_histogram(
                _merge(fast_input_chars, self.slow_input_chars),
                fast.input_chars + slow.input_chars,
                max(fast.input_chars_max, slow.input_chars_max),
            ),
            output_chars=Distribution.from_histogram(
                _merge(fast_output_chars, self.slow_output_chars),
                fast.output_chars + slow.output_chars,
                max(fast.output_chars_max, slow.output_chars_max),
            ),
            input_tokens=Distribution.from_histogram(
                input_tokens,
                fast.input_tokens + slow.input_tokens,
                max(fast.input_tokens_max, slow.input_tokens_max),
            ),
            output_tokens=Distribution.from_histogram(
                output_tokens,
                fast.output_tokens + slow.output_tokens,
                max(fast.output_tokens_max, slow.output_tokens_max),
            ),
            examples_with_system_instruction=fast.system_examples + slow.system_examples,
            system_instruction_chars=fast.system_chars + slow.system_chars,
            media_parts={kind: self.media_parts.get(kind, 0) for kind in MEDIA_TOKEN_ESTIMATES},
            multimodal_examples=self.multimodal_examples,
            function_call_parts=self.function_call_parts,
            function_response_parts=self.function_response_parts,
            duplicates=self.duplicates,
            duplicate_detection_complete=self.dedupe.complete,
            over_token_limit_examples=self.over_limit,
            dataset_tokens=fast.input_tokens
            + fast.output_tokens
            + slow.input_tokens
            + slow.output_tokens
            - self.over_limit_tokens,
            epochs=self.options.epochs,
            token_estimate_method=TOKEN_ESTIMATE_METHOD,
        )


def _nonzero(counts: list[int]) -> dict[int, int]:
    """A value-indexed count list as a histogram dict."""
    return {value: count for value, count in enumerate(counts) if count}


def _merge(first: dict[int, int], second: dict[int, int]) -> dict[int, int]:
    merged = dict(first)
    for key, count in second.items():
        merged[key] = merged.get(key, 0) + count
    return merged


def _derive_token_histogram(fast_chars: dict[int, int], slow_tokens: dict[int, int]) -> dict[int, int]:
    """Fast-path examples are text-only with exact keys: their tokens are ceil(chars/4)."""
    merged = dict(slow_tokens)
    for chars, count in fast_chars.items():
        tokens = estimate_text_tokens(chars)
        merged[tokens] = merged.get(tokens, 0) + count
    return merged


# ----------------------------------------------------------------------------- helpers ---


def _issue_line(issue: Issue) -> int:
    return issue.line or 0


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _json_length(value: Any) -> int:
    """Length of ``value`` as compact JSON.

    orjson parses 1024 levels of nesting but serialises only 254, so deeper values are measured
    by walking them (iteratively: recursion would hit the same wall).
    """
    try:
        return len(orjson.dumps(value))
    except TypeError:
        total, stack = 0, [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                total += 2 + len(item)
                for key, child in item.items():
                    total += len(key) + 3
                    stack.append(child)
            elif isinstance(item, list):
                total += 2 + len(item)
                stack.extend(item)
            else:
                total += len(str(item)) + 2
        return total


def _short(value: Any, limit: int = 40) -> str:
    try:
        shown = orjson.dumps(value).decode("utf-8", errors="replace")
    except TypeError:  # nested deeper than orjson serialises
        shown = f"a JSON {_json_type(value)} nested more than 254 levels deep"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _first_present(mapping: dict[str, Any], canonical: str) -> Any:
    """The value under ``canonical`` or its snake_case alias, or _MISSING."""
    if canonical in mapping:
        return mapping[canonical]
    for alias, target in SNAKE_CASE_ALIASES.items():
        if target == canonical and alias in mapping:
            return mapping[alias]
    return _MISSING


def _unknown_key(
    report: Callable[[int | None, str, str, str, str | None], None],
    line_number: int,
    prefix: str,
    key: str,
    known: Iterable[str],
) -> None:
    choices = list(known)
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    allowed = ", ".join(choices)
    hint = f"Did you mean {close[0]!r}? Allowed here: {allowed}." if close else f"Allowed here: {allowed}."
    report(line_number, f"{prefix}{key}", "E_UNKNOWN_KEY", f"unknown key {key!r}", hint)


def _only_function_responses(parts: Any) -> bool:
    """True for a non-empty parts list of functionResponse parts only."""
    if not isinstance(parts, list) or not parts:
        return False
    return all(isinstance(part, dict) and ("functionResponse" in part or "function_response" in part) for part in parts)


def _mime_hint(mime: Any) -> str:
    """Name the allowed types of the same modality (or all modalities) for an unlisted type."""
    kind = mime.split("/", 1)[0].lower() if isinstance(mime, str) else ""
    kind = {"application": "document", "text": "text_file"}.get(kind, kind)
    if kind in MIME_TYPES_BY_KIND:
        return f"Supported {kind} types: {', '.join(MIME_TYPES_BY_KIND[kind])}."
    return "Supported types: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in MIME_TYPES_BY_KIND.items()) + "."


def _role_hint(role: Any) -> str | None:
    if not isinstance(role, str):
        return None
    lowered = role.strip().lower()
    if lowered in ("assistant", "bot", "ai", "gpt", "chatbot"):
        return (
            f'Replace "role": "{role}" with "role": "model" in this line ("assistant" is the OpenAI name; '
            "`sftpilot convert IN OUT --from openai` also rewrites it in Gemini-format lines)."
        )
    if lowered == "system":
        return 'Move system prompts out of contents into "systemInstruction": {"parts": [{"text": "..."}]}.'
    if lowered in _VALID_ROLES:
        return f'Roles are lower-case: use "{lowered}".'
    if lowered in ("human", "customer"):
        return 'Use "user" for the prompts.'
    return None


def _json_hint(line: bytes, message: str) -> str | None:
    stripped = line.strip()
    if stripped.startswith(b"{'") or b"': '" in stripped:
        return "This looks like a Python dict: JSON needs double quotes (write it with json.dumps)."
    if b"}{" in stripped or b"} {" in stripped:
        return "Two JSON objects on one line: put each example on its own line."
    if b"NaN" in stripped or b"Infinity" in stripped:
        return "NaN/Infinity are not JSON: use null or a number."
    if b",}" in stripped.replace(b" ", b"") or b",]" in stripped.replace(b" ", b""):
        return "Remove the trailing comma before the closing bracket."
    if "EOF" in message or "end of" in message.lower():
        return "The line ends before the JSON does: an object was cut off or spread over several lines."
    return None
