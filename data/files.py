"""The text files of a dataset, in a folder or in a .zip, read line by line with errors that name them."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from typing import Iterator

from twostage.data.errors import DataError

_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, which spreadsheet exports put first
# What reading a damaged .zip member raises besides BadZipFile.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError)


class DataFiles:
    """Named text files in a folder or in a .zip (any one folder level inside it)."""

    def __init__(self, path: str):
        self.path = path
        if os.path.isdir(path):
            self._zip = None
            self._names = {name: os.path.join(path, name) for name in os.listdir(path)}
        elif zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except _ZIP_ERRORS as err:
                raise DataError(f"the .zip archive is damaged ({err})", path) from None
            self._names = {}
            for member in self._zip.namelist():
                base = member.rsplit("/", 1)[-1]
                if base and member.count("/") <= 1:
                    self._names.setdefault(base, member)
        elif os.path.exists(path):
            raise DataError(
                "not a folder or a .zip archive; point --data at a MovieLens folder "
                "(u.data, ratings.dat or ratings.csv inside) or at its .zip", path)
        else:
            raise DataError("no such file or folder", path)

    def has(self, name: str) -> bool:
        return name in self._names

    def display(self, name: str) -> str:
        if self._zip is None:
            return self._names[name]
        return f"{self.path}:{self._names[name]}"

    def local_path(self, name: str):
        """The file's path when it is a plain file (readers may map it), None inside a .zip."""
        return self._names[name] if self._zip is None else None

    def raw(self, name: str, size: int = -1) -> bytes:
        """The file's bytes (the first ``size`` of them, if given: a .zip member is then
        decompressed only that far)."""
        try:
            opened = open(self._names[name], "rb") if self._zip is None else self._zip.open(self._names[name])
            with opened as f:
                return f.read(size)
        except _ZIP_ERRORS as err:
            what = "cannot read this member of the .zip archive (damaged?)" if self._zip else "cannot read the file"
            raise DataError(f"{what}: {err}", self.display(name)) from None

    def first_line(self, name: str) -> str:
        """The first line (of at most 4 KB), past any byte-order mark, undecodable bytes replaced."""
        return self.raw(name, 4096).removeprefix(_BOM).split(b"\n", 1)[0].decode("utf-8", "replace")

    def lines(self, name: str, encoding: str) -> Iterator[tuple[int, str]]:
        """Yields (1-based line number, line without its newline), raising on an empty file."""
        raw = self.raw(name)
        if raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if not raw.strip():
            raise DataError("the file is empty", self.display(name))
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(f"not {encoding} text ({err.reason})", self.display(name), line) from None
        if not text.strip():  # only characters str.strip() drops (e.g. \x1c): no line to read
            raise DataError("the file is empty", self.display(name))
        for number, line in enumerate(io.StringIO(text, newline=None), start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line
