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

import numpy as np

from twostage.data.schema import AGE_BUCKETS, MovieLensData, Movies, Ratings, Users

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


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the generated dataset.

    Attributes:
      num_users: users to generate.
      num_movies: catalog size (at most 8 tastes x 12 x 8 distinct base titles, then numbered).
      mean_ratings_per_user: average ratings per user (each user rates at least 10).
      latent_dim: dimension of the planted taste vectors.
      noise: standard deviation of the rating noise, in stars.
      seed: makes the whole dataset reproducible.
    """

    num_users: int = 943
    num_movies: int = 1200
    mean_ratings_per_user: int = 60
    latent_dim: int = 16
    noise: float = 0.6
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """The generated dataset plus the planted truth, for tests and sanity checks."""

    data: MovieLensData
    movie_taste: dict  # movie id -> taste name
    user_taste: dict  # user id -> main taste name


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    """Generates a MovieLens-shaped dataset from planted tastes.

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

    # Which movies each user rates: popularity x affinity, sampled without replacement
    # (Gumbel top-k); then ratings from the planted factor model.
    affinity = user_vec @ movie_vec.T  # [users, movies]
    log_weight = np.log(popularity)[None, :] + 3.0 * affinity
    counts = np.clip(rng.lognormal(np.log(config.mean_ratings_per_user) - 0.3, 0.75, size=config.num_users),
                     10, config.num_movies // 2).astype(int)
    users_col, movies_col, ratings_col, stamps_col = [], [], [], []
    start = 874_724_710  # a MovieLens-era timestamp
    for u in range(config.num_users):
        keys = log_weight[u] + rng.gumbel(size=config.num_movies)
        chosen = np.argpartition(-keys, counts[u])[: counts[u]]
        raw = 2.5 + user_bias[u] + movie_bias[chosen] + 1.6 * affinity[u, chosen] + rng.normal(
            0.0, config.noise, size=len(chosen))
        stars = np.clip(np.rint(raw), 1, 5)
        first = start + int(rng.integers(0, 180 * 86400))
        stamps = first + np.sort(rng.integers(0, 60 * 86400, size=len(chosen)))
        order = rng.permutation(len(chosen))  # the order of rating is not the order of taste
        users_col.extend([str(u + 1)] * len(chosen))
        movies_col.extend(str(m + 1) for m in chosen[order])
        ratings_col.extend(stars[order].tolist())
        stamps_col.extend(stamps.tolist())
    order = np.argsort(np.asarray(stamps_col), kind="stable")
    ratings = Ratings.from_rows(users_col, movies_col, ratings_col, stamps_col).take(order)

    movie_ids = np.asarray([str(m + 1) for m in range(config.num_movies)])
    user_ids = np.asarray([str(u + 1) for u in range(config.num_users)])
    data = MovieLensData(
        name="synthetic",
        ratings=ratings,
        movies=Movies(movie_ids, np.asarray(titles, dtype=str), tuple(genres), np.asarray(years, dtype=np.int32)),
        users=Users(user_ids, age_choices[age_index].astype(np.int32), gender.astype(str), occupation.astype(str),
                    zip_code.astype(str)),
        rating_scale=(1.0, 5.0),
    )
    return SyntheticData(
        data=data,
        movie_taste={movie_ids[m]: _TASTES[movie_taste[m]][0] for m in range(config.num_movies)},
        user_taste={user_ids[u]: _TASTES[user_taste[u]][0] for u in range(config.num_users)},
    )
