"""Shard files of training examples: written, read back, checked against the run that reads them."""

import json

import numpy as np
import pytest

from twostage.data.errors import DataError
from twostage.data.shards import (MANIFEST, ROW_BYTES, check_matches, read_shards, vocabulary_fingerprint,
                                  write_shards)

SPLIT = {"method": "random", "seed": 42, "test_fraction": 0.2, "validation_fraction": 0.1}


def _parts(n=103):
    users = np.arange(n) % 17 + 1
    return {name: {"user_id": users[:size], "movie_id": np.arange(size) % 11 + 1,
                   "rating": (np.arange(size) % 5 + 1).astype(np.float32)}
            for name, size in (("fit", n - 10), ("train", n))}


def _read(path):
    values = np.fromfile(path, "<i4").reshape(3, -1)
    return values[0], values[1], values[2].view("<f4")


def test_every_row_lands_in_one_shard_with_its_columns(tmp_path):
    parts = _parts()
    shards = write_shards(str(tmp_path), parts, 4, seed=1, source="/data", split=SPLIT, fingerprint="abc", counts={"users": 17})
    assert [s.rows for s in shards.parts["train"]] == [26, 26, 26, 25] and shards.rows("fit") == 93
    rows = [tuple(zip(*_read(s.path))) for s in shards.parts["train"]]
    written = sorted(r for shard in rows for r in shard)
    expected = sorted(zip(parts["train"]["user_id"].tolist(), parts["train"]["movie_id"].tolist(),
                          parts["train"]["rating"].tolist()))
    assert written == expected
    assert shards.source == "/data" and shards.split == SPLIT and shards.fingerprint == "abc"
    assert shards.counts == {"users": 17}


def test_a_damaged_folder_is_named(tmp_path):
    shards = write_shards(str(tmp_path), _parts(), 2, seed=1, source="s", split=SPLIT, fingerprint="abc", counts={"users": 17})
    path = shards.parts["fit"][1].path
    with open(path, "ab") as f:
        f.write(b"\0" * ROW_BYTES)
    with pytest.raises(DataError, match="the manifest says 46 rows"):
        read_shards(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="not a manifest of twostage-shards-1"):
        read_shards(str(tmp_path))


def test_shards_of_another_split_or_vocabulary_are_refused(tmp_path):
    shards = write_shards(str(tmp_path), _parts(), 2, seed=1, source="s", split=SPLIT, fingerprint="abc", counts={"users": 17})
    with pytest.raises(DataError, match="prepared with --seed 42"):
        check_matches(shards, {**SPLIT, "seed": 7}, "abc")
    with pytest.raises(DataError, match="other vocabularies"):
        check_matches(shards, SPLIT, "def")
    check_matches(shards, SPLIT, "abc")


def test_the_fingerprint_depends_on_the_vocabularies_and_their_order():
    base = vocabulary_fingerprint(["1", "2"], ["a", "b"])
    assert base == vocabulary_fingerprint(["1", "2"], ["a", "b"])
    assert base != vocabulary_fingerprint(["2", "1"], ["a", "b"])
    assert base != vocabulary_fingerprint(["1", "2"], ["a", "b", "c"])
    assert base != vocabulary_fingerprint(["1"], ["2", "a", "b"])
