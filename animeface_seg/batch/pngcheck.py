"""Whether a PNG is whole, found cheaply: its chunks walked by their lengths to an IEND that ends the file.

``--skip-existing`` trusts an output only when this holds (a file cut short, by a full disk or a
copy that stopped, fails it). The image data (IDAT) is stepped over by its length, never read;
every other chunk (the header, the text chunks holding the settings record, the end) is small and
has its CRC checked. The first ``HEAD_BYTES`` are read at once; later chunk headers one by one.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO

#: The eight bytes every PNG starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes read at once from the start (the header and text chunks come before the pixels).
HEAD_BYTES = 64 * 1024


class DamagedPNG(ValueError):
    """A file that is not a whole PNG; the message says what is wrong with it."""


class NotPNG(DamagedPNG):
    """A file without the PNG signature: another tool's file rather than a damaged output."""


def _bytes(stream: BinaryIO, head: bytes, offset: int, count: int) -> bytes:
    """``count`` bytes at ``offset``: from ``head`` where it holds them, else read from ``stream``."""
    if offset + count <= len(head):
        return head[offset:offset + count]
    stream.seek(offset)
    data = stream.read(count)
    if len(data) != count:
        raise DamagedPNG(f"ends at byte {offset + len(data)}, inside a chunk")
    return data


def text_chunks(stream: BinaryIO) -> dict[str, str]:
    """The ``tEXt`` chunks (keyword -> text) of the whole PNG in a seekable ``stream``.

    Raises ``DamagedPNG`` unless the signature, an IHDR first, image data, intact CRCs (image data
    aside) and an IEND that ends the file are all there; ``OSError`` when it cannot be read.
    """
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    head = stream.read(min(size, HEAD_BYTES))
    if head[:8] != PNG_SIGNATURE:
        if PNG_SIGNATURE.startswith(head):
            raise DamagedPNG(f"is cut short: {size} bytes, not even its signature")
        raise NotPNG("is not a PNG")
    texts: dict[str, str] = {}
    position, images = 8, 0
    while True:
        if position + 12 > size:
            raise DamagedPNG(f"is cut short: {size} bytes, no IEND")
        length, kind = struct.unpack(">I4s", _bytes(stream, head, position, 8))
        end = position + 12 + length
        if end > size:
            raise DamagedPNG(f"is cut short: {size} bytes, its {kind.decode('latin-1')!r} chunk needs {end}")
        if (position == 8) != (kind == b"IHDR"):
            raise DamagedPNG("does not start with its IHDR header")
        if kind == b"IDAT":
            images += 1
        else:
            body = _bytes(stream, head, position + 4, length + 4)
            if zlib.crc32(body) != int.from_bytes(_bytes(stream, head, end - 4, 4), "big"):
                raise DamagedPNG(f"has a damaged {kind.decode('latin-1')!r} chunk (CRC mismatch)")
            if kind == b"tEXt":
                keyword, _, text = body[4:].partition(b"\0")
                texts[keyword.decode("latin-1")] = text.decode("latin-1")
        if kind == b"IEND":
            if not images:
                raise DamagedPNG("holds no image data")
            if end != size:
                raise DamagedPNG(f"has {size - end} bytes after its IEND")
            return texts
        position = end
