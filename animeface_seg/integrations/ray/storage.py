"""Where inputs and outputs live: local paths or object-storage URIs (``s3://``, ``gs://``).

An object key is a ``StoragePath``: pure-path arithmetic on ``bucket/key`` (so ``OutputSpec.outputs``
and the collision check work on it unchanged), printed as its URI. ``Storage`` turns a path
into the pyarrow filesystem that reads and writes it; it holds only settings, so it travels
to Ray workers and opens its connections there.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

from animeface_seg.batch.store import LOCAL
from animeface_seg.batch.tempfiles import Writer

#: Bytes one ranged read of an object fetches: the PNG check's later chunk headers come from few requests.
READ_WINDOW = 1 << 20
#: Environment variables naming an S3-compatible endpoint (the AWS SDKs' conventions), most specific first.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class StoragePath(PurePosixPath):
    """An object key as ``bucket/key``, printed as ``scheme://bucket/key``; subclasses fix the scheme."""

    scheme = ""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    @property
    def key(self) -> str:
        """``bucket/key``, the path pyarrow filesystems take."""
        return PurePosixPath.__str__(self)

    def resolve(self) -> StoragePath:
        """The path itself: an object key has no links to follow (lets local discovery exclude it as OUT)."""
        return self


class S3Path(StoragePath):
    """A key in S3 or an S3-compatible store."""

    scheme = "s3"


class GcsPath(StoragePath):
    """A key in Google Cloud Storage."""

    scheme = "gs"


_SCHEMES: dict[str, type[StoragePath]] = {"s3": S3Path, "s3a": S3Path, "gs": GcsPath, "gcs": GcsPath}

#: A local file or folder, or an object key.
Location = Union[Path, StoragePath]


def is_uri(text: str) -> bool:
    """Whether a command-line path names object storage (``scheme://...``) rather than a local file."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def parse_location(text: str) -> Location:
    """A local ``Path``, or a ``StoragePath`` for ``s3://bucket/prefix`` and ``gs://bucket/prefix``.

    Raises ``ValueError`` naming the supported schemes for any other URI.
    """
    if not is_uri(text):
        return Path(text)
    scheme, _, rest = text.partition("://")
    kind = _SCHEMES.get(scheme.lower())
    if kind is None:
        raise ValueError(f"{text}: unsupported storage scheme {scheme!r} (use a local path, s3:// or gs://)")
    key = rest.strip("/")
    if not key:
        raise ValueError(f"{text}: no bucket named (use {scheme}://bucket/prefix)")
    return kind(key)


def s3_endpoint(explicit: str | None = None) -> str | None:
    """The S3 endpoint to use: ``explicit``, else ``$AWS_ENDPOINT_URL_S3``, else ``$AWS_ENDPOINT_URL``."""
    return explicit or next((os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None)


class Storage:
    """Opens the pyarrow filesystem for a location; picklable (settings only, connections made on use)."""

    def __init__(self, s3_endpoint: str | None = None) -> None:
        self.s3_endpoint = s3_endpoint
        self._filesystems: dict[str, object] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"s3_endpoint": self.s3_endpoint}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["s3_endpoint"])

    def filesystem(self, location: Location):
        """The ``pyarrow.fs.FileSystem`` holding ``location`` (one per scheme, reused)."""
        from pyarrow import fs

        scheme = location.scheme if isinstance(location, StoragePath) else "file"
        with self._lock:
            if scheme not in self._filesystems:
                if scheme == "file":
                    self._filesystems[scheme] = fs.LocalFileSystem()
                elif scheme == "s3" and self.s3_endpoint:
                    self._filesystems[scheme] = fs.S3FileSystem(endpoint_override=self.s3_endpoint)
                else:
                    self._filesystems[scheme] = fs.FileSystem.from_uri(str(location))[0]
            return self._filesystems[scheme]

    def read(self, location: Location) -> bytes:
        """The whole content of a file or object."""
        if isinstance(location, Path):
            return location.read_bytes()
        with self.filesystem(location).open_input_stream(location.key) as stream:
            return stream.readall()

    def write(self, location: Location, data: bytes) -> None:
        """Store ``data`` whole: a local file via a temporary name and an atomic rename, an object in one put."""
        self.write_set({location: lambda stream: stream.write(data)})

    def is_file(self, location: Location) -> bool:
        """Whether a file or object is at ``location``."""
        from pyarrow import fs

        if isinstance(location, Path):
            return LOCAL.is_file(location)
        return self.filesystem(location).get_file_info(location.key).type == fs.FileType.File

    def open(self, location: Location) -> BinaryIO:
        """A file or object opened for reading, seekable: an object's size from its metadata, its bytes by
        ranged reads of ``READ_WINDOW`` (a seek within the last one reads nothing more)."""
        if isinstance(location, Path):
            return LOCAL.open(location)
        return io.BufferedReader(self.filesystem(location).open_input_file(location.key), READ_WINDOW)

    def write_set(self, files: Mapping[Location, Writer]) -> None:
        """Write every file or object, all or nothing: local files through ``tempfiles.write_set``; objects
        each in one whole put, and those already put are deleted again when a later one fails."""
        local = {path: write for path, write in files.items() if isinstance(path, Path)}
        if local:
            LOCAL.write_set(local)
        put: list[StoragePath] = []
        try:
            for location, write in files.items():
                if isinstance(location, Path):
                    continue
                buffer = io.BytesIO()
                write(buffer)
                with self.filesystem(location).open_output_stream(location.key) as stream:
                    stream.write(buffer.getvalue())
                put.append(location)
        except BaseException:
            for location in [*put, *local]:
                try:
                    if isinstance(location, Path):
                        location.unlink()
                    else:
                        self.filesystem(location).delete_file(location.key)
                except OSError:
                    pass
            raise
