"""anchor_id rules and key files: ids with line breaks or control characters are refused at read time, so
a key file (one id a line, split on "\\n" only) can never split an id or shift a row."""

from __future__ import annotations

import numbers
import unicodedata
from pathlib import Path

from anchor_embed import atomic
from anchor_embed.errors import AnchorEmbedError

# what str.splitlines() splits on besides \n: refusing them keeps every key file one id a line for any reader
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def bad_id_reason(key: str) -> str | None:
    """Why a string cannot be an anchor_id (blank, surrounding whitespace, a line break, a control character), or
    None."""
    if not key.strip():
        return "anchor_id is blank"
    if key != key.strip():      # ' x' would be another streamer than 'x' everywhere it is looked up
        return f"anchor_id {key[:40]!r} starts or ends with whitespace"
    for ch in key:
        if ch in LINE_BREAKS or unicodedata.category(ch) == "Cc":
            return f"anchor_id {key[:40]!r} holds a line break or control character (U+{ord(ch):04X})"
    return None


def integer_id(value: object) -> str | None:
    """The id an integer stands for (warehouse tables key streamers by BIGINT: 12345, numpy's int64 12345 too,
    is '12345'), or None for anything that is no integer (booleans are not ids)."""
    if isinstance(value, numbers.Integral) and type(value).__name__ not in ("bool", "bool_"):
        return str(int(value))
    return None


def read_text(path: str | Path) -> str:
    """A text file's content (a leading byte-order mark dropped: spreadsheet exports start with one); bytes that are
    not UTF-8 are one clear error naming the file and line, not a UnicodeDecodeError traceback. The one reader of
    key files, id lists, clusters files and review logs."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:       # exc.start counts from after a byte-order mark, as exc.object does
        line = exc.object[:exc.start].count(b"\n") + 1
        raise AnchorEmbedError(f"{path}: line {line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None


def read_keys(path: str | Path) -> list[str]:
    """One key a line, split on "\\n" only (a trailing "\\r" and a leading byte-order mark are dropped); not
    UTF-8 is one clear error."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [x[:-1] if x.endswith("\r") else x for x in lines]


def write_keys(path: str | Path, keys) -> None:
    """Write keys one a line, atomically (each was checked by `bad_id_reason` where it was read)."""
    atomic.write_lines(path, keys)
