"""Files: atomic writes (temporary file in the same folder, then a rename) and ``.npz`` reading
without pickle."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ttamer.errors import FieldError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader never sees a partial file; permissions follow the umask."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def portable_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None) -> str:
    """``path`` as recorded in logs and result files, free of this machine's layout: relative to
    ``base`` (default: the current folder; ``"."`` for itself) when inside it, ``<python>/...``
    inside the Python installation (executables, installed packages), ``<source>/...`` inside
    the folder holding this package's source (a source checkout), else unchanged."""
    p = Path(os.path.abspath(path))
    roots = (
        (Path(os.path.abspath(base or os.getcwd())), ""),
        (Path(sys.prefix), "<python>/"),
        (Path(__file__).resolve().parent.parent, "<source>/"),
    )
    for root, prefix in roots:
        try:
            rel = p.relative_to(root).as_posix()
        except ValueError:
            continue
        return prefix + rel if prefix else rel
    return str(path)


def open_npz(path: str | os.PathLike[str], error: type[FieldError] = FieldError) -> Any:
    """An ``.npz`` opened without pickle, every member's header checked before any data is read
    (:class:`ttamer.loading.NpzFile`); failures raise ``error`` naming the file or member. Use
    it as a context manager."""
    from ttamer.loading import NpzFile

    return NpzFile(path, error)
