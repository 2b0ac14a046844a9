"""Reading the small JSON files the helper is given (outputs, ``--data-file``) as UTF-8.

JSON files are UTF-8 (RFC 8259). A UTF-8 byte order mark is accepted, because
Windows tools write one; anything else that is not UTF-8 is refused with a
description of what the file is, so the caller can say how to re-save it. A
UTF-16 file is named as such: Windows PowerShell's ``>`` writes UTF-16, which
makes ``pulumi stack output --json > FILE`` the common way to get one.

This module deliberately does not guess other encodings: a wrong guess would
turn into a wrong payload or wrong outputs instead of an error.
"""

from __future__ import annotations

import codecs
from pathlib import Path

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


class NotUtf8Error(ValueError):
    """The file is not UTF-8; ``detail`` says what it is instead (for a message)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def decode_utf8(data: bytes) -> str:
    """``data`` as text: UTF-8, with or without a byte order mark.

    Raises:
        NotUtf8Error: the bytes are UTF-16, UTF-32 or otherwise not UTF-8.
    """
    # UTF-32 LE's mark starts with UTF-16 LE's, so it is checked first.
    if data.startswith(_UTF32_BOMS):
        raise NotUtf8Error("is UTF-32, not UTF-8")
    if data.startswith(_UTF16_BOMS) or (len(data) >= 2 and b"\x00" in data[:2]):
        raise NotUtf8Error("is UTF-16, not UTF-8 (Windows PowerShell's > writes UTF-16)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotUtf8Error(f"is not valid UTF-8 (byte {exc.start + 1})") from None


def read_utf8(path: Path) -> str:
    """The text of ``path`` (see :func:`decode_utf8`); ``OSError`` passes through."""
    return decode_utf8(path.read_bytes())
