"""Files on disk: what counts as a readable input, content hashes, atomic writes, the cache folder.

One place for each, because every stage reads inputs (films, photos, manifests) and several
write outputs (captions, cached embeddings, converted models) that must never be seen half
written or silently replace a file the user did not ask to replace.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import MovieIdError

FINGERPRINT_BYTES = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK   # what open() would give; mkstemp makes 0600 files


def check_input_file(path: Path, what: str = "file") -> os.stat_result:
    """A non-empty regular file we may read, or a one-line error naming it.

    Never opens the file: a named pipe, socket or device is refused here, before anything
    could block reading it.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise MovieIdError(f"is a broken symbolic link, not a {what}", path) from None
        raise MovieIdError(f"no such {what}", path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise MovieIdError(f"is a symbolic link loop, not a {what}", path) from None
        raise MovieIdError(f"cannot access {what} ({exc.strerror})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise MovieIdError(f"is a directory, not a {what}", path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise MovieIdError(f"is {kind}, not a regular {what}", path)
    if st.st_size == 0:
        raise MovieIdError(f"is empty (0 bytes), not a {what}", path)
    if not os.access(path, os.R_OK):
        raise MovieIdError(f"{what} is not readable (permission denied)", path)
    return st


def file_state(path: Path) -> tuple[int, int]:
    """Size and modification time: what changes while a file is still being written."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def check_unchanged(path: Path, before: tuple[int, int]) -> None:
    """A film that changed while it was read (a download or a recording still being written)
    gives outputs that match no version of it: refused, so nothing is written."""
    try:
        now = file_state(path)
    except OSError as exc:
        raise MovieIdError(f"disappeared while it was being read ({exc.strerror})", path) from None
    if now != before:
        raise MovieIdError("changed while it was being read (is it still being written?); annotate it "
                           "once it is complete", path)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: Path) -> str:
    """Size, modification time and a hash of the first and last MiB: cheap, and it changes when
    the file is replaced or edited (for a batch journal's "did this film change?"). A named
    pipe or device is never opened (reading it could block for ever)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return f"not-a-file:{stat.S_IFMT(st.st_mode):o}"
        digest = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(FINGERPRINT_BYTES))
            if st.st_size > FINGERPRINT_BYTES:
                fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
                digest.update(fh.read(FINGERPRINT_BYTES))
        return digest.hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.errno}"


def default_cache_dir() -> Path:
    """``$MOVIEID_CACHE_DIR``, else ``$XDG_CACHE_HOME/movieid``, else ``~/.cache/movieid``."""
    env = os.environ.get("MOVIEID_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "movieid"


TEMP_SUFFIX = ".tmp"


def _stage(path: Path, data: bytes) -> Path:
    """``data`` in a temporary file beside ``path`` (``.<name>.<random>.tmp``), flushed to disk."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def write_files(files: dict[Path, bytes], replace: bool) -> list[Path]:
    """Write every file completely, then move them all into place together: either all are
    written or none (what they replaced comes back).

    Without ``replace`` a file that exists is never replaced, also one that appeared while
    the caller worked: each is linked into place (``link`` fails if the name exists, with no
    window between a check and the write) and on a clash the files already placed by this
    call are removed again. With ``replace`` each file it replaces is first kept under a
    temporary name (a hard link), and put back if a later file cannot be placed. Raises
    ``FileExistsError`` naming the clash, or ``OSError``.
    """
    staged: dict[Path, Path] = {}
    kept: dict[Path, Path | None] = {}    # placed -> the file it replaced, kept aside (None: there was none)
    try:
        for path, data in files.items():
            staged[path] = _stage(path, data)
        for path, tmp in staged.items():
            if replace:
                kept[path] = _keep_aside(path)
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
                kept[path] = None
                os.unlink(tmp)
        return list(kept)
    except BaseException:
        for path, old in kept.items():
            if old is None:
                _unlink(path)
            else:
                with contextlib.suppress(OSError):   # the error that brought us here is the one to report
                    os.replace(old, path)
        kept.clear()
        raise
    finally:
        for tmp in [*staged.values(), *(old for old in kept.values() if old is not None)]:
            _unlink(tmp)


def _keep_aside(path: Path) -> Path | None:
    """A hard link to the file at ``path`` under a temporary name (None: no file there)."""
    if not (path.is_file() or path.is_symlink()):
        return None
    for attempt in range(100):
        aside = path.with_name(f".{path.name}.{os.getpid()}-{attempt}.old{TEMP_SUFFIX}")
        try:
            os.link(path, aside, follow_symlinks=False)
            return aside
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot keep the replaced file aside", str(path))


def write_file(path: Path, data: bytes, replace: bool = True) -> Path:
    """One file, atomically (see ``write_files``)."""
    return write_files({Path(path): data}, replace)[0]


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_temp_files(folder: Path, names: Iterable[str]) -> int:
    """Delete the temporary files a killed run left beside outputs named ``names`` (globs)."""
    removed = 0
    for name in names:
        for path in Path(folder).rglob(f".{name}.*{TEMP_SUFFIX}"):
            _unlink(path)
            removed += 1
    return removed
