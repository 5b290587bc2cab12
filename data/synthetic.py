"""A deterministic generator of MovieLens-shaped data with planted structure.

This is SYNTHETIC data, embedded so that every command works offline and in tests. It has
the MovieLens schema (users with age/gender/occupation/zip, movies with titles, genres and
years, 1-5 star ratings with timestamps) and is generated from planted "tastes":

* every movie belongs to one taste, which sets its main genres, its era, the words in its
  title and the direction of its latent vector;
* every user has a main taste (and demographics correlated with it);
* which movies a user rates follows popularity times taste affinity, and the rating is
  global mean + user bias + movie bias + affinity + noise, rounded to 1..5.

So a model that learns tastes beats popularity, and tests can check that movies of one
planted taste come back together (:attr:`SyntheticData.movie_taste`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from twostage.data.errors import ConfigError, check_at_least
from twostage.data.schema import AGE_BUCKETS, CodedIds, MovieLensData, Movies, Ratings, Users

_TASTES = (
    # (name, genres, (first year, last year), title words)
    ("action", ("Action", "Thriller"), (1980, 1998),
     ("Strike", "Fury", "Velocity", "Impact", "Target", "Blaze", "Vendetta", "Pursuit")),
    ("family", ("Animation", "Children's", "Comedy"), (1988, 1998),
     ("Puppy", "Rainbow", "Magic", "Toybox", "Giggle", "Meadow", "Balloon", "Dragonfly")),
    ("noir", ("Film-Noir", "Crime", "Mystery"), (1940, 1960),
     ("Shadow", "Alibi", "Midnight", "Dame", "Ledger", "Rain", "Cigarette", "Verdict")),
    ("scifi", ("Sci-Fi", "Adventure"), (1977, 1998),
     ("Orbit", "Nebula", "Android", "Quasar", "Colony", "Warp", "Singularity", "Probe")),
    ("romance", ("Romance", "Drama"), (1985, 1998),
     ("Letters", "Summer", "Promise", "Waltz", "Heart", "Wedding", "Moonlight", "Rose")),
    ("horror", ("Horror",), (1970, 1995),
     ("Crypt", "Scream", "Harvest", "Hollow", "Basement", "Fog", "Ritual", "Carnival")),
    ("western", ("Western", "War"), (1950, 1975),
     ("Canyon", "Outlaw", "Frontier", "Saddle", "Bugle", "Mesa", "Garrison", "Stagecoach")),
    ("musical", ("Musical", "Comedy", "Romance"), (1950, 1970),
     ("Melody", "Broadway", "Tapdance", "Serenade", "Chorus", "Ballroom", "Encore", "Swing")),
)
_ADJECTIVES = ("Silent", "Last", "Golden", "Broken", "Hidden", "Endless", "Crimson", "Lost",
               "Wild", "Final", "Secret", "Distant")
_OCCUPATIONS = ("student", "engineer", "educator", "programmer", "artist", "administrator",
                "writer", "technician", "librarian", "healthcare", "retired", "other")


# Up to this many users x movies cells, each user's movies are drawn by an exact Gumbel top-k
# over the whole catalog (the small default data sets, whose figures tests and docs quote);
# past it, from popularity-drawn proposals (time and memory proportional to the ratings).
EXACT_SAMPLING_CELLS = 50_000_000
# Users whose proposals are scored at once by the proposal sampler.
_PROPOSALS_PER_CHUNK = 1_000_000


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the generated dataset.

    Attributes:
      num_users: users to generate.
      num_movies: catalog size (at most 8 tastes x 12 x 8 distinct base titles, then numbered).
      mean_ratings_per_user: average ratings per user (each user rates at least 10).
      num_ratings: if given, the total to aim for (sets the mean per user; the total comes
        out within a few percent of it).
      latent_dim: dimension of the planted taste vectors.
      noise: standard deviation of the rating noise, in stars.
      seed: makes the whole dataset reproducible.
    """

    num_users: int = 943
    num_movies: int = 1200
    mean_ratings_per_user: int = 60
    num_ratings: Optional[int] = None
    latent_dim: int = 16
    noise: float = 0.6
    seed: int = 0

    def __post_init__(self):
        for name in ("num_users", "num_movies", "mean_ratings_per_user", "num_ratings", "latent_dim"):
            check_at_least(f"synthetic {name}", getattr(self, name))
        if self.num_movies < 2:
            raise ConfigError(f"synthetic num_movies must be at least 2, got {self.num_movies}")

    @property
    def ratings_per_user(self) -> float:
        return self.num_ratings / self.num_users if self.num_ratings else float(self.mean_ratings_per_user)

    @staticmethod
    def parse(spec: str) -> "SyntheticConfig":
        """Reads "users=162541,movies=62423,ratings=25000000[,seed=1]" (what follows
        ``--data synthetic:``).

        Raises:
          ConfigError: an unknown key or a value that is not a whole number.
        """
        keys = {"users": "num_users", "movies": "num_movies", "ratings": "num_ratings", "seed": "seed"}
        values = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = part.partition("=")
            if key.strip() not in keys or not value.strip().isdigit():
                raise ConfigError(f"cannot read {part!r} in --data synthetic:{spec}: use users=N,movies=N,"
                                  f"ratings=N,seed=N (whole numbers)")
            values[keys[key.strip()]] = int(value)
        return SyntheticConfig(**values)


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """The generated dataset plus the planted truth, for tests and sanity checks."""

    data: MovieLensData
    movie_taste: dict  # movie id -> taste name
    user_taste: dict  # user id -> main taste name


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    """Generates a MovieLens-shaped dataset from planted tastes.

    Memory and time grow with the ratings, not with users x movies: past
    ``EXACT_SAMPLING_CELLS`` the movies each user rates are drawn from popularity proposals
    re-weighted by taste, a chunk of users at a time.

    Args:
      config: sizes and seed.

    Returns:
      The dataset (ratings ordered by timestamp, as a log would be) and the planted tastes.
    """
    rng = np.random.default_rng(config.seed)
    num_tastes = len(_TASTES)
    centroids = rng.normal(size=(num_tastes, config.latent_dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

    # Movies: taste, latent vector near the taste centroid, popularity, quality bias.
    movie_taste = rng.integers(0, num_tastes, size=config.num_movies)
    movie_vec = centroids[movie_taste] + 0.45 * rng.normal(size=(config.num_movies, config.latent_dim)) / np.sqrt(
        config.latent_dim)
    popularity = rng.lognormal(mean=0.0, sigma=1.1, size=config.num_movies)
    movie_bias = rng.normal(0.0, 0.35, size=config.num_movies)
    titles, genres, years = [], [], []
    used = {}
    for m in range(config.num_movies):
        name, base_genres, (first, last), words = _TASTES[movie_taste[m]]
        year = int(rng.integers(first, last + 1))
        title = f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {words[rng.integers(len(words))]}"
        used[title] = used.get(title, 0) + 1
        if used[title] > 1:
            title = f"{title} {used[title]}"
        titles.append(f"{title} ({year})")
        own = [g for g in base_genres if rng.random() < 0.75] or [base_genres[0]]
        if rng.random() < 0.15:  # a few cross-genre movies, as in real catalogs
            other = _TASTES[rng.integers(num_tastes)][1]
            own.append(other[rng.integers(len(other))])
        genres.append(tuple(dict.fromkeys(own)))
        years.append(year)

    # Users: main taste, latent vector, demographics loosely tied to the taste.
    user_taste = rng.integers(0, num_tastes, size=config.num_users)
    user_vec = centroids[user_taste] + 0.5 * rng.normal(size=(config.num_users, config.latent_dim)) / np.sqrt(
        config.latent_dim)
    user_bias = rng.normal(0.0, 0.3, size=config.num_users)
    age_choices = np.asarray(AGE_BUCKETS)
    age_index = np.clip(user_taste % len(AGE_BUCKETS) + rng.integers(-1, 2, size=config.num_users), 0,
                        len(AGE_BUCKETS) - 1)
    gender = np.where(rng.random(config.num_users) < 0.3 + 0.4 * (user_taste % 2), "F", "M")
    occupation = np.asarray([_OCCUPATIONS[(t * 3 + rng.integers(0, 3)) % len(_OCCUPATIONS)] for t in user_taste])
    zip_code = np.asarray([f"{(t * 11 + rng.integers(0, 10)) % 100:02d}{rng.integers(0, 1000):03d}"
                           for t in user_taste])

    raw_counts = rng.lognormal(np.log(config.ratings_per_user) - 0.3, 0.75, size=config.num_users)
    bounds = (min(10, config.num_movies // 2), config.num_movies // 2)
    counts = np.clip(raw_counts, *bounds).astype(int)
    for _ in range(10 if config.num_ratings else 0):
        # The clip to the bounds loses or adds ratings: rescale until the total is the one asked for.
        factor = config.num_ratings / max(1, counts.sum())
        if abs(factor - 1.0) < 0.002:
            break
        raw_counts *= factor
        counts = np.clip(raw_counts, *bounds).astype(int)
    planted = _Planted(user_vec, movie_vec, np.log(popularity), user_bias, movie_bias, config.noise)
    if config.num_users * config.num_movies <= EXACT_SAMPLING_CELLS:
        user_rows, movie_rows, stars, stamps = _rate_exact(rng, planted, counts)
    else:
        user_rows, movie_rows, stars, stamps = _rate_sampled(rng, planted, counts)
    order = np.argsort(stamps, kind="stable")
    movie_ids = np.arange(1, config.num_movies + 1).astype(str)
    user_ids = np.arange(1, config.num_users + 1).astype(str)
    ratings = Ratings(CodedIds(user_rows[order].astype(np.int32), user_ids),
                      CodedIds(movie_rows[order].astype(np.int32), movie_ids),
                      stars[order].astype(np.float32), stamps[order])
    data = MovieLensData(
        name="synthetic",
        ratings=ratings,
        movies=Movies(movie_ids, np.asarray(titles, dtype=str), tuple(genres), np.asarray(years, dtype=np.int32)),
        users=Users(user_ids, age_choices[age_index].astype(np.int32), gender.astype(str), occupation.astype(str),
                    zip_code.astype(str)),
        rating_scale=(1.0, 5.0),
    )
    names = np.asarray([t[0] for t in _TASTES])
    return SyntheticData(
        data=data,
        movie_taste=dict(zip(movie_ids.tolist(), names[movie_taste].tolist())),
        user_taste=dict(zip(user_ids.tolist(), names[user_taste].tolist())),
    )


@dataclasses.dataclass(frozen=True)
class _Planted:
    """The planted factor model: who rates what, and how."""

    user_vec: np.ndarray
    movie_vec: np.ndarray
    log_popularity: np.ndarray
    user_bias: np.ndarray
    movie_bias: np.ndarray
    noise: float

    def stars(self, rng: np.random.Generator, users: np.ndarray, movies: np.ndarray, affinity: np.ndarray):
        raw = 2.5 + self.user_bias[users] + self.movie_bias[movies] + 1.6 * affinity + rng.normal(
            0.0, self.noise, size=len(movies))
        return np.clip(np.rint(raw), 1, 5)


_START = 874_724_710  # a MovieLens-era timestamp


def _rate_exact(rng: np.random.Generator, planted: _Planted, counts: np.ndarray):
    """Each user's movies by Gumbel top-k over the whole catalog (popularity x affinity)."""
    num_users, num_movies = len(counts), len(planted.movie_vec)
    affinity = planted.user_vec @ planted.movie_vec.T  # [users, movies]
    log_weight = planted.log_popularity[None, :] + 3.0 * affinity
    users_col, movies_col, ratings_col, stamps_col = [], [], [], []
    for u in range(num_users):
        keys = log_weight[u] + rng.gumbel(size=num_movies)
        chosen = np.argpartition(-keys, counts[u])[: counts[u]]
        stars = planted.stars(rng, np.full(len(chosen), u), chosen, affinity[u, chosen])
        first = _START + int(rng.integers(0, 180 * 86400))
        stamps = first + np.sort(rng.integers(0, 60 * 86400, size=len(chosen)))
        order = rng.permutation(len(chosen))  # the order of rating is not the order of taste
        users_col.append(np.full(len(chosen), u))
        movies_col.append(chosen[order])
        ratings_col.append(stars[order])
        stamps_col.append(stamps)
    return (np.concatenate(users_col), np.concatenate(movies_col), np.concatenate(ratings_col),
            np.concatenate(stamps_col).astype(np.int64))


def _rate_sampled(rng: np.random.Generator, planted: _Planted, counts: np.ndarray):
    """Each user's movies from popularity-drawn proposals, the best by taste (Gumbel keys) kept.

    Four proposals per wanted rating, drawn in proportion to popularity, keyed by
    3 x affinity + Gumbel noise: the distinct movies with the highest keys approximate the
    exact sampler's draw without replacement from popularity x exp(3 x affinity).
    """
    cumulative = np.cumsum(np.exp(planted.log_popularity))
    cumulative /= cumulative[-1]
    wanted = 4 * counts + 20
    user_vec, movie_vec = planted.user_vec.astype(np.float32), planted.movie_vec.astype(np.float32)
    parts, start = [], 0
    while start < len(counts):
        stop = start + max(1, int(np.searchsorted(np.cumsum(wanted[start:]), _PROPOSALS_PER_CHUNK)))
        stop = min(stop, len(counts))
        users = np.repeat(np.arange(start, stop), wanted[start:stop])
        movies = np.minimum(np.searchsorted(cumulative, rng.random(len(users))), len(cumulative) - 1)
        affinity = np.einsum("ij,ij->i", user_vec[users], movie_vec[movies])
        keys = 3.0 * affinity + rng.gumbel(size=len(users))
        # Best key first within each user (stable integer sorts: lexsort is many times slower),
        # then only the first of each (user, movie) pair.
        order = np.argsort(-keys)
        order = order[np.argsort(users[order], kind="stable")]
        users, movies, affinity = users[order], movies[order], affinity[order]
        _, first = np.unique(users.astype(np.int64) * len(cumulative) + movies, return_index=True)
        first = np.sort(first)
        users, movies, affinity = users[first], movies[first], affinity[first]
        begins = np.searchsorted(users, np.arange(start, stop))
        rank = np.arange(len(users)) - np.repeat(begins, np.diff(np.r_[begins, len(users)]))
        keep = rank < counts[users]
        users, movies, affinity = users[keep], movies[keep], affinity[keep]
        stars = planted.stars(rng, users, movies, affinity)
        firsts = _START + rng.integers(0, 180 * 86400, size=stop - start)
        stamps = firsts[users - start] + rng.integers(0, 60 * 86400, size=len(users))
        parts.append((users, movies, stars, stamps.astype(np.int64)))
        start = stop
    return tuple(np.concatenate(column) for column in zip(*parts))
