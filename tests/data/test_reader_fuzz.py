"""Property-based fuzzing of the readers: a mutated MovieLens file in any of the three layouts
is either read, or refused with a DataError naming the file; never another exception.

Uses hypothesis (a well-kept library made for this) to draw the mutations: truncation, byte
flips, wrong separators, huge numbers, empty fields, BOMs, CRLF line ends, inserted lines.
"""

import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from movielens_files import write_csv, write_ml100k, write_ml1m, zip_folder
from twostage.data import DataError
from twostage.data.readers import read_movielens
from twostage.data.schema import MovieLensData

LAYOUTS = {"ml-100k": (write_ml100k, ("u.data", "u.item", "u.user")),
           "ml-1m": (write_ml1m, ("ratings.dat", "movies.dat", "users.dat")),
           "csv": (write_csv, ("ratings.csv", "movies.csv"))}
NASTY = [b"", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"inf", b"nan", b"-1", b"1e400", b"9" * 23, b"\r\n", b"\n",
         b"\t", b"::", b",", b"|", b'"', b"\xc3", b"\xe2\x82\xac", b"\xb2", b" ", b"99999999999999999999"]


@pytest.fixture(scope="module")
def originals(small_data):
    """Each layout written once from a few rated movies: (folder, files) per layout."""
    tiny = small_data.with_ratings(small_data.ratings.take(np.arange(40)))
    root = tempfile.mkdtemp(prefix="fuzz-originals-")
    yield {name: (writer(tiny, os.path.join(root, name)), files) for name, (writer, files) in LAYOUTS.items()}
    shutil.rmtree(root, ignore_errors=True)


def _mutate(raw: bytes, kind: str, at: float, payload: bytes, count: int) -> bytes:
    position = int(at * len(raw))
    if kind == "truncate":
        return raw[:position]
    if kind == "flip":
        flipped = bytearray(raw)
        for i in range(count):
            j = (position + 7919 * i) % max(1, len(raw))
            if flipped:
                flipped[j] ^= 1 << (i % 8)
        return bytes(flipped)
    if kind == "insert":
        return raw[:position] + payload + raw[position:]
    if kind == "replace":
        return raw[:position] + payload + raw[position + count:]
    if kind == "separators":
        return raw.replace(b"\t", b",").replace(b"::", b";").replace(b",", b"\t")
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    if kind == "crlf":
        return raw.replace(b"\n", b"\r\n")
    if kind == "empty_field":
        line_start = raw.rfind(b"\n", 0, position) + 1
        line_end = raw.find(b"\n", position)
        line_end = len(raw) if line_end < 0 else line_end
        line = raw[line_start:line_end]
        for separator in (b"\t", b"::", b",", b"|"):
            if separator in line:
                fields = line.split(separator)
                fields[count % len(fields)] = b""
                return raw[:line_start] + separator.join(fields) + raw[line_end:]
        return raw
    raise AssertionError(kind)


MUTATION = st.tuples(st.sampled_from(["truncate", "flip", "insert", "replace", "separators", "bom", "crlf",
                                      "empty_field"]),
                     st.floats(0, 1), st.one_of(st.sampled_from(NASTY), st.binary(max_size=12)),
                     st.integers(1, 40))


@settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(sorted(LAYOUTS)), file_index=st.integers(0, 2), zipped=st.booleans(),
       mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_file_is_read_or_refused_with_a_data_error(originals, layout, file_index, zipped, mutations):
    folder, files = originals[layout]
    name = files[file_index % len(files)]
    work = tempfile.mkdtemp(prefix="fuzz-")
    try:
        target = os.path.join(work, layout)
        shutil.copytree(folder, target)
        with open(os.path.join(target, name), "rb") as f:
            raw = f.read()
        for mutation in mutations:
            raw = _mutate(raw, *mutation)
        with open(os.path.join(target, name), "wb") as f:
            f.write(raw)
        path = zip_folder(target, os.path.join(work, f"{layout}.zip")) if zipped else target
        try:
            data = read_movielens(path)
        except DataError as err:
            event("refused with a DataError")
            message = str(err)
            assert "\n" not in message.strip(), message
            assert os.path.basename(path) in message or path in message, message
            return
        event("read")
        assert isinstance(data, MovieLensData) and len(data.ratings) > 0 and len(data.movies) > 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
