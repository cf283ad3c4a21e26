"""What a path given as an input file is, in words, the check that it is a regular file, and atomic writes.

A directory, /dev/null, a FIFO or a socket given where a file is expected gets its own message instead of a
misleading "does not exist" or a confusing error from the reader further down.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["path_kind", "require_regular_file", "NotARegularFileError", "atomic_replace"]


class NotARegularFileError(OSError):
    """The path exists but is not a regular file (a directory, device, FIFO or socket)."""


def path_kind(path: str | os.PathLike) -> str:
    """"regular file", "directory", "character device" (e.g. /dev/null), "block device", "FIFO (named pipe)",
    "socket", "missing" (also a dangling symbolic link) or "unreadable" (stat failed otherwise)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: a path below a file
        return "missing"
    except OSError:
        return "unreadable"
    for test, kind in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "special file"


def require_regular_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path when it is a regular file; else FileNotFoundError ("<what> file X does not exist") or
    NotARegularFileError ("<what> X is a directory, not a file")."""
    path = Path(path)
    kind = path_kind(path)
    if kind == "regular file":
        return path
    if kind == "missing":
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if kind == "unreadable":
        raise NotARegularFileError(f"{what} file {path} cannot be accessed")
    raise NotARegularFileError(f"{what} {path} is a {kind}, not a regular file")


@contextmanager
def atomic_replace(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends without an error and is
    removed otherwise, so readers never see a half-written file. The result gets the permissions a plain ``open``
    would give (0666 minus the umask), not the owner-only mode of temporary files."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
