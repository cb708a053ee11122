"""File names as they are shown to people: one name, one line, nothing the terminal would act on.

Control characters (newline, ESC, ...), line and paragraph separators and bidirectional overrides
are written as escapes (``\\n``, ``\\x1b``, ``\\u202e``); bytes that are not valid in the file
system's encoding (kept by Python as lone surrogates) are written ``\\xNN``.
"""

from __future__ import annotations

import os
import re

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SUSPECT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by os.fsdecode as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(name: str | os.PathLike[str]) -> str:
    """``name`` escaped so it prints as one inert line (see the module docstring)."""
    text = os.fspath(name)
    return _SUSPECT.sub(_escape, text)

