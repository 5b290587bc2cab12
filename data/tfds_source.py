"""MovieLens through ``tensorflow-datasets`` (``movielens/100k-ratings`` and friends).

Useful where the machine is online (Colab): TFDS downloads and prepares the files once.
Offline, and not prepared before, it fails at once with one sentence that says how to use
local files instead, rather than hanging on retries deep inside the download manager.
"""

from __future__ import annotations

import socket
from typing import Optional
from urllib.parse import urlparse

import numpy as np

from twostage.data.errors import DataError
from twostage.data.readers import release_year
from twostage.data.schema import MovieLensData, Movies, Ratings, Users, age_bucket

RATINGS_CONFIGS = ("100k-ratings", "1m-ratings", "20m-ratings", "25m-ratings", "latest-small-ratings")


def _reachable(url: str, timeout: float = 5.0) -> bool:
    host = urlparse(url).hostname or "files.grouplens.org"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_tfds(name: str, data_dir: Optional[str] = None) -> MovieLensData:
    """Loads a TFDS MovieLens ratings config into the common schema.

    Args:
      name: "movielens/<config>", one of the ``-ratings`` configs (e.g. movielens/100k-ratings).
      data_dir: TFDS data folder (TFDS's default when None).

    Returns:
      The dataset; the catalog holds the movies that appear in the ratings.

    Raises:
      DataError: unknown config, or the data is not prepared and cannot be downloaded.
    """
    config = name.split("/", 1)[1] if "/" in name else ""
    if config not in RATINGS_CONFIGS:
        raise DataError(f"unknown TFDS source {name!r}; use one of "
                        + ", ".join(f"movielens/{c}" for c in RATINGS_CONFIGS))
    import tensorflow_datasets as tfds

    builder = tfds.builder(f"movielens/{config}", data_dir=data_dir)
    if not builder.is_prepared():
        url = builder.builder_config.download_url
        if not _reachable(url):
            raise DataError(
                f"cannot download {name}: {urlparse(url).hostname} is unreachable from this machine "
                f"(offline?); download {url} elsewhere and pass the unzipped folder or the .zip "
                "with --data PATH instead")
        builder.download_and_prepare()
    dataset = builder.as_dataset(split="train")
    genre_names = builder.info.features["movie_genres"].feature.names
    has_users = "user_gender" in builder.info.features

    columns = {k: [] for k in ("user_id", "movie_id", "movie_title", "movie_genres", "user_rating", "timestamp")}
    user_rows = {}
    for row in tfds.as_numpy(dataset):
        for key in columns:
            columns[key].append(row[key])
        if has_users:
            user = row["user_id"].decode()
            if user not in user_rows:
                age = int(row["raw_user_age"]) if "raw_user_age" in row else int(row["bucketized_user_age"])
                user_rows[user] = (user, age_bucket(age), "M" if row["user_gender"] else "F",
                                   row["user_occupation_text"].decode(), row["user_zip_code"].decode())
    if not columns["user_id"]:
        raise DataError(f"{name} has no ratings")

    decode = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[str])
    movie_ids = decode(np.asarray(columns["movie_id"], dtype=object))
    ratings = Ratings.from_rows(decode(np.asarray(columns["user_id"], dtype=object)), movie_ids,
                                columns["user_rating"], columns["timestamp"])
    catalog = {}
    for movie, title, genres in zip(movie_ids.tolist(), columns["movie_title"], columns["movie_genres"]):
        if movie not in catalog:
            title = title.decode("utf-8", "replace")
            names = tuple(genre_names[g] for g in genres if genre_names[g] not in ("Unknown", "(no genres listed)"))
            catalog[movie] = (title, names)
    ids = list(catalog)
    movies = Movies(
        movie_id=np.asarray(ids, dtype=str),
        title=np.asarray([catalog[m][0] for m in ids], dtype=str),
        genres=tuple(catalog[m][1] for m in ids),
        year=np.asarray([release_year(catalog[m][0]) for m in ids], dtype=np.int32),
    )
    users = None
    if has_users:
        rows = list(user_rows.values())
        users = Users(*(np.asarray(col, dtype=np.int32 if i == 1 else str) for i, col in enumerate(zip(*rows))))
    scale = (0.5, 5.0) if np.any(np.mod(ratings.rating, 1.0) != 0) else (1.0, 5.0)
    return MovieLensData(name=name, ratings=ratings, movies=movies, users=users, rating_scale=scale)
