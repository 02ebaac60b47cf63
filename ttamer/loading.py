"""Reading files safely: every failure to open, read or parse a file becomes a
:class:`~ttamer.errors.FieldError` (or the subclass the caller names) that names the file and the
field, never a traceback.

* :func:`read_bytes` and :func:`read_text`: missing file, a folder, no permission, an I/O error,
  a file too large to be an input here, bad UTF-8.
* :func:`load_json`: the above, invalid JSON, nesting too deep for the parser.
* :class:`NpzFile`: an ``.npz`` archive opened without pickle whose members' headers (shape,
  dtype) are read and checked before any data is: not a zip archive (empty, truncated, an
  ``.npy`` renamed), a member that is not an ``.npy`` array, arrays of Python objects (pickle),
  and a size guard on what the members would take in memory. Reading a member catches CRC
  errors, truncated data and decompression failures.

Limits (bytes) come from the environment: ``TTAMER_MAX_ARRAY_BYTES`` (default 4 GiB) for all
members of one ``.npz`` together, ``TTAMER_MAX_TEXT_BYTES`` (default 1 GiB) for a JSON file.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ttamer.errors import FieldError

READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError, RuntimeError)


def _limit(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def max_array_bytes() -> int:
    return _limit("TTAMER_MAX_ARRAY_BYTES", 4 << 30)


def max_text_bytes() -> int:
    return _limit("TTAMER_MAX_TEXT_BYTES", 1 << 30)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (library messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _oserror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def existing_file(path: str | os.PathLike[str], error: type[FieldError] = FieldError) -> Path:
    """``path`` as a :class:`Path` if it names a regular file (FieldError ``file`` otherwise)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise error("file", f"{p} is a folder, not a file")
        if not p.is_file():
            raise error("file", f"{p} does not exist")
    except OSError as exc:  # e.g. a name too long, or a path through a file
        raise error("file", f"{p} cannot be opened ({_oserror(exc)})") from None
    return p


def read_bytes(
    path: str | os.PathLike[str], error: type[FieldError] = FieldError, limit: int | None = None
) -> bytes:
    """The bytes of a file; at most ``limit`` (default :func:`max_text_bytes`)."""
    p = existing_file(path, error)
    cap = max_text_bytes() if limit is None else limit
    try:
        size = p.stat().st_size
        if size > cap:
            raise error(
                "file", f"{p} is {size:,} bytes, more than the limit of {cap:,} (TTAMER_MAX_TEXT_BYTES)"
            )
        return p.read_bytes()
    except OSError as exc:
        raise error("file", f"{p} cannot be read ({_oserror(exc)})") from None


def read_text(path: str | os.PathLike[str], error: type[FieldError] = FieldError) -> str:
    """The UTF-8 text of a file."""
    data = read_bytes(path, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error("file", f"{path} is not UTF-8 text (byte {exc.start})") from None


def load_json(path: str | os.PathLike[str], error: type[FieldError] = FieldError) -> Any:
    """A JSON document (``NaN`` and ``Infinity`` are read as floats, for the field checks that
    follow to refuse them by name)."""
    text = read_text(path, error)
    try:
        return json.loads(text)
    except RecursionError:
        raise error("file", f"{path} is nested too deeply to be an input here") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise error("file", f"{path} is not valid JSON ({exc})") from None


def refuse_booleans(value: Any, field: str, error: type[FieldError] = FieldError, base: int = 0) -> None:
    """A number field read from JSON must hold numbers: ``true`` / ``false`` are refused (Python
    would read them as 1 and 0). ``base``: the number of the field's first entry in messages
    (1 for ``losses``, whose stages count from 1)."""
    stack: list[tuple[Any, str, int]] = [(value, field, base)]
    while stack:
        v, where, first = stack.pop()
        if isinstance(v, bool):
            raise error(where, f"holds {str(v).lower()}, not a number")
        if isinstance(v, list):
            stack.extend((x, f"{where}[{i + first}]", 0) for i, x in enumerate(v))


class NpzFile:
    """An ``.npz`` archive, checked on opening (see the module docstring); use it as a context
    manager. ``files``: the member names (without ``.npy``); ``shape(key)``, ``dtype(key)`` from
    the headers; ``npz[key]`` reads one member."""

    def __init__(self, path: str | os.PathLike[str], error: type[FieldError] = FieldError):
        self.path = existing_file(path, error)
        self.error = error
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise error("file", f"{self.path} is not a readable .npz archive ({self._why(exc)})") from None
        try:
            self._headers = {name[:-4]: self._header(name) for name in self._member_names()}
        except BaseException:
            self._zip.close()
            raise
        total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in self._headers.values())
        if total > max_array_bytes():
            self._zip.close()
            raise error(
                "file",
                f"{self.path} would take {total:,} bytes in memory, more than the limit of "
                f"{max_array_bytes():,} (TTAMER_MAX_ARRAY_BYTES)",
            )

    @staticmethod
    def _why(exc: BaseException) -> str:
        return str(exc) or type(exc).__name__

    def _member_names(self) -> list[str]:
        names = self._zip.namelist()
        bad = [n for n in names if not n.endswith(".npy")]
        if bad:
            raise self.error("file", f"{self.path}: member {bad[0]!r} is not an .npy array")
        return names

    def _header(self, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
        key = name[:-4]
        try:
            with self._zip.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
        except READ_ERRORS as exc:
            raise self.error(key, f"is not a readable .npy array ({self._why(exc)})") from None
        if dtype.hasobject:
            raise self.error(key, "holds Python objects (pickle), which are never loaded")
        return tuple(int(x) for x in shape), dtype

    @property
    def files(self) -> list[str]:
        return list(self._headers)

    def __contains__(self, key: object) -> bool:
        return key in self._headers

    def shape(self, key: str) -> tuple[int, ...]:
        return self._headers[key][0]

    def dtype(self, key: str) -> np.dtype[Any]:
        return self._headers[key][1]

    def __getitem__(self, key: str) -> NDArray[Any]:
        if key not in self._headers:
            raise self.error(key, "is missing")
        try:
            with self._zip.open(key + ".npy") as fh:
                arr: NDArray[Any] = np.lib.format.read_array(fh, allow_pickle=False)
        except READ_ERRORS as exc:
            raise self.error(key, f"cannot be read ({self._why(exc)})") from None
        return arr

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def scalar(npz: NpzFile, key: str, kind: str = "number") -> Any:
    """A 0-d member as a Python value: ``kind`` ``"number"`` (finite float), ``"integer"``
    (an integer value, also when stored as a float such as 3.0), or ``"text"``."""
    if npz.shape(key) != ():
        raise npz.error(key, f"must be a single value, got an array of shape {npz.shape(key)}")
    value = npz[key][()]
    value = value.item() if isinstance(value, np.generic) else value
    if kind == "text":
        return str(value)
    if isinstance(value, (str, bytes, np.str_, np.bytes_)) or isinstance(value, (bool, np.bool_)):
        raise npz.error(key, f"must be a {kind}, got {value!r}")
    number = float(value)
    if kind == "integer" and (not math.isfinite(number) or number != int(number)):
        raise npz.error(key, f"must be an integer, got {value!r}")
    if not math.isfinite(number):
        raise npz.error(key, f"must be finite, got {value!r}")
    return int(number) if kind == "integer" else number
