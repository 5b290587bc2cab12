"""Writes a dataset in the GroupLens layouts, so reader tests need no real MovieLens files."""

import os
import zipfile

from twostage.data.readers import ML100K_GENRES, ML1M_OCCUPATIONS


def write_ml100k(data, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "u.data"), "w") as f:
        for u, m, r, t in zip(data.ratings.user_id, data.ratings.movie_id, data.ratings.rating, data.ratings.timestamp):
            f.write(f"{u}\t{m}\t{int(r)}\t{t}\n")
    with open(os.path.join(folder, "u.item"), "w", encoding="latin-1") as f:
        for m, title, genres, year in zip(data.movies.movie_id, data.movies.title, data.movies.genres, data.movies.year):
            flags = "|".join("1" if g in genres else "0" for g in ML100K_GENRES)
            f.write(f"{m}|{title}|01-Jan-{year}||http://example.org|{flags}\n")
    with open(os.path.join(folder, "u.user"), "w") as f:
        for u, age, gender, occ, zip_code in zip(data.users.user_id, data.users.age, data.users.gender,
                                                 data.users.occupation, data.users.zip_code):
            f.write(f"{u}|{max(age, 1)}|{gender}|{occ}|{zip_code}\n")
    with open(os.path.join(folder, "u.genre"), "w") as f:
        for i, g in enumerate(ML100K_GENRES):
            f.write(f"{g}|{i}\n")
    return folder


def write_ml1m(data, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "ratings.dat"), "w") as f:
        for u, m, r, t in zip(data.ratings.user_id, data.ratings.movie_id, data.ratings.rating, data.ratings.timestamp):
            f.write(f"{u}::{m}::{int(r)}::{t}\n")
    with open(os.path.join(folder, "movies.dat"), "w", encoding="latin-1") as f:
        for m, title, genres in zip(data.movies.movie_id, data.movies.title, data.movies.genres):
            f.write(f"{m}::{title}::{'|'.join(genres)}\n")
    with open(os.path.join(folder, "users.dat"), "w") as f:
        for u, age, gender, zip_code in zip(data.users.user_id, data.users.age, data.users.gender,
                                           data.users.zip_code):
            f.write(f"{u}::{gender}::{age}::{len(u) % len(ML1M_OCCUPATIONS)}::{zip_code}\n")
    return folder


def write_csv(data, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "ratings.csv"), "w") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for u, m, r, t in zip(data.ratings.user_id, data.ratings.movie_id, data.ratings.rating, data.ratings.timestamp):
            f.write(f"{u},{m},{r:.1f},{t}\n")
    with open(os.path.join(folder, "movies.csv"), "w", encoding="utf-8") as f:
        f.write("movieId,title,genres\n")
        for m, title, genres in zip(data.movies.movie_id, data.movies.title, data.movies.genres):
            f.write(f'{m},"{title}",{"|".join(genres) or "(no genres listed)"}\n')
    return folder


def zip_folder(folder, zip_path):
    """Zips ``folder`` the way GroupLens does: one top-level folder inside."""
    top = os.path.basename(os.path.normpath(folder))
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in sorted(os.listdir(folder)):
            archive.write(os.path.join(folder, name), f"{top}/{name}")
    return zip_path
