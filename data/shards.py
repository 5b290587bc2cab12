"""Training examples written once as shard files, for input pipelines that read their own files.

``twostage prepare`` splits a dataset as ``twostage train`` will, codes the fit and training
parts against the run's vocabularies and writes each part as shard files; a training run
given the folder (``--data DIR``) then feeds each worker's input pipeline from its own
files (every ``workers``-th shard) instead of the rows held in the process (for parameter
servers: shipped inside every worker's dataset function).

A shard file holds three equal column blocks of 4-byte little-endian values, one row per
example: the user-vocabulary row (int32; 0: unknown user), the catalog row (int32,
position + 1) and the rating (float32). ``tf.io.decode_raw`` reads one whole, with no
parsing per example. Rows are dealt to the shards in a seeded random order, so every
shard is a random sample of its part. ``shards.json`` lists the files and their rows, the
split, the counts (ratings per part, users, movies) and a fingerprint of the vocabularies
the rows were coded against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Sequence

import numpy as np

from twostage.data.errors import DataError

MANIFEST = "shards.json"
FORMAT = "twostage-shards-1"
PARTS = ("fit", "train")
ROW_BYTES = 12  # int32 user row, int32 catalog row, float32 rating


@dataclasses.dataclass(frozen=True)
class ShardFile:
    """One shard: its path and how many examples it holds."""

    path: str
    rows: int


@dataclasses.dataclass(frozen=True)
class ExampleShards:
    """The shard files of the parts training reads, as ``shards.json`` describes them.

    Attributes:
      folder: where the files are.
      source: the data source they were prepared from (``--data`` of ``prepare``).
      split: the split settings they were cut with (method, seed, test_fraction).
      fingerprint: of the user vocabulary and the catalog the rows are coded against.
      counts: ratings of each part, users and movies of the vocabularies.
      parts: "fit" and "train" -> their shard files.
    """

    folder: str
    source: str
    split: dict
    fingerprint: str
    counts: Dict[str, int]
    parts: Dict[str, List[ShardFile]]

    def rows(self, part: str) -> int:
        return sum(shard.rows for shard in self.parts[part])


def vocabulary_fingerprint(user_ids: Sequence[str], catalog_ids: Sequence[str]) -> str:
    """A digest of the vocabularies example rows are coded against (their order included)."""
    digest = hashlib.sha256()
    for ids in (user_ids, catalog_ids):
        digest.update(str(len(ids)).encode())
        digest.update("\0".join(np.asarray(ids, dtype=str).tolist()).encode("utf-8"))
    return digest.hexdigest()[:16]


def write_shards(folder: str, parts: Dict[str, Dict[str, np.ndarray]], shards: int, seed: int, source: str,
                 split: dict, fingerprint: str, counts: Dict[str, int]) -> ExampleShards:
    """Writes each part's example rows as ``shards`` files and the manifest.

    Args:
      folder: the output folder (created).
      parts: "fit" / "train" -> {"user_id", "movie_id", "rating"} arrays (Prepared.example_rows).
      shards: files per part.
      seed: seeds the order rows are dealt to the shards in.
      source, split, fingerprint, counts: recorded in the manifest (see ExampleShards).
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    listed = {}
    for name, rows in parts.items():
        order = rng.permutation(len(rows["user_id"]))
        listed[name] = []
        for index, chunk in enumerate(np.array_split(order, shards)):
            file_name = f"{name}-{index:05d}-of-{shards:05d}.bin"
            with open(os.path.join(folder, file_name), "wb") as f:
                for column, dtype in (("user_id", "<i4"), ("movie_id", "<i4"), ("rating", "<f4")):
                    f.write(np.ascontiguousarray(rows[column][chunk], dtype=dtype).tobytes())
            listed[name].append(ShardFile(file_name, len(chunk)))
    manifest = {"format": FORMAT, "source": source, "split": split, "fingerprint": fingerprint, "counts": counts,
                "parts": {name: [dataclasses.asdict(s) for s in files] for name, files in listed.items()}}
    temporary = os.path.join(folder, MANIFEST + ".tmp")
    with open(temporary, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(temporary, os.path.join(folder, MANIFEST))
    return read_shards(folder)


def is_shard_folder(path: str) -> bool:
    """Whether ``path`` is a folder ``twostage prepare`` wrote."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def read_shards(folder: str) -> ExampleShards:
    """The manifest of a prepared folder, its files checked.

    Raises:
      DataError: no manifest, one of another format, or a file missing or of the wrong size.
    """
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the prepared folder's manifest: {err}", path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"not a manifest of {FORMAT} (write the folder again with twostage prepare)", path)
    parts = {}
    for name in PARTS:
        parts[name] = [ShardFile(os.path.join(folder, s["path"]), int(s["rows"])) for s in manifest["parts"][name]]
        for shard in parts[name]:
            size = os.path.getsize(shard.path) if os.path.exists(shard.path) else None
            if size != shard.rows * ROW_BYTES:
                raise DataError(f"holds {size} bytes, the manifest says {shard.rows} rows of {ROW_BYTES}; "
                                f"prepare the folder again", shard.path)
    return ExampleShards(folder, manifest["source"], manifest["split"], manifest["fingerprint"],
                         manifest.get("counts", {}), parts)


def check_matches(shards: ExampleShards, split: dict, fingerprint: str) -> None:
    """DataError unless the shards were cut with ``split`` and coded against these vocabularies."""
    if shards.split != split:
        differing = ", ".join(f"--{key.replace('_', '-')} {shards.split.get(key)}" for key in sorted(split)
                              if shards.split.get(key) != split.get(key))
        raise DataError(f"was prepared with {differing}: train with the same split settings, or prepare again",
                        shards.folder)
    if shards.fingerprint != fingerprint:
        raise DataError(f"was prepared against other vocabularies than {shards.source} gives now "
                        f"(the data changed?): prepare it again", shards.folder)
