import os

import numpy as np
import pytest

from movielens_files import write_csv, write_ml100k, write_ml1m, zip_folder
from twostage.data import DataError, load_dataset
from twostage.data.readers import read_movielens


@pytest.fixture(scope="module")
def tiny(small_data):
    # A few hundred ratings are enough to exercise every reader.
    return small_data.with_ratings(small_data.ratings.take(np.arange(300)))


def _same(read, original, with_users=True):
    np.testing.assert_array_equal(read.ratings.user_id, original.ratings.user_id)
    np.testing.assert_array_equal(read.ratings.movie_id, original.ratings.movie_id)
    np.testing.assert_allclose(read.ratings.rating, original.ratings.rating)
    np.testing.assert_array_equal(read.ratings.timestamp, original.ratings.timestamp)
    np.testing.assert_array_equal(read.movies.movie_id, original.movies.movie_id)
    np.testing.assert_array_equal(read.movies.title, original.movies.title)
    np.testing.assert_array_equal(read.movies.year, original.movies.year)
    assert [set(g) for g in read.movies.genres][:20] == [set(g) for g in original.movies.genres][:20]
    assert (read.users is not None) == with_users


@pytest.mark.parametrize("writer,with_users", [(write_ml100k, True), (write_ml1m, True), (write_csv, False)])
def test_each_format_reads_back_from_folder_and_zip(tmp_path, tiny, writer, with_users):
    folder = writer(tiny, str(tmp_path / "ml-test"))
    _same(read_movielens(folder), tiny, with_users)
    archive = zip_folder(folder, str(tmp_path / "ml-test.zip"))
    _same(load_dataset(archive), tiny, with_users)


def test_ml100k_users_are_bucketed_like_ml1m(tmp_path, tiny):
    data = read_movielens(write_ml100k(tiny, str(tmp_path / "d")))
    assert set(data.users.age.tolist()) <= {1, 18, 25, 35, 45, 50, 56}
    assert data.rating_scale == (1.0, 5.0)


def test_csv_titles_with_commas_and_half_stars(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama\n'
                                       "2,Heat (1995),(no genres listed)\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5,964982703\n2,2,0.5,964982224\n")
    data = read_movielens(str(folder))
    assert data.movies.title[0] == "American President, The (1995)"
    assert data.movies.genres == (("Comedy", "Drama"), ())
    assert data.movies.year.tolist() == [1995, 1995]
    assert data.ratings.rating.tolist() == [4.5, 0.5]
    assert data.users is None and data.rating_scale == (0.5, 5.0)


def _ml100k(tmp_path, tiny):
    return write_ml100k(tiny, str(tmp_path / "ml-100k"))


def _replace_line(path, number, text):
    lines = open(path).read().splitlines()
    lines[number - 1] = text
    open(path, "w").write("\n".join(lines) + "\n")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(str(tmp_path / "nowhere"))


def test_folder_without_ratings_names_the_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DataError, match="u.data.*ratings.dat.*ratings.csv"):
        load_dataset(str(tmp_path))


def test_a_plain_file_is_not_a_dataset(tmp_path):
    path = tmp_path / "ratings.txt"
    path.write_text("1 2 3\n")
    with pytest.raises(DataError, match="not a folder or a .zip"):
        load_dataset(str(path))


def test_malformed_line_names_file_and_line(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    _replace_line(os.path.join(folder, "u.data"), 7, "1\t2\t3")
    with pytest.raises(DataError, match=r"u\.data, line 7: expected 4 tab-separated fields"):
        read_movielens(folder)


def test_rating_out_of_range_names_line_user_and_movie(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    user, movie = tiny.ratings.user_id[11], tiny.ratings.movie_id[11]
    _replace_line(os.path.join(folder, "u.data"), 12, f"{user}\t{movie}\t6\t881250949")
    with pytest.raises(DataError, match=rf"u\.data, line 12: rating 6 is out of range.*user {user}, movie {movie}"):
        read_movielens(folder)


def test_non_numeric_rating(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    _replace_line(os.path.join(folder, "u.data"), 3, "1\t2\tfive\t881250949")
    with pytest.raises(DataError, match=r"line 3: rating 'five' is not a number"):
        read_movielens(folder)


def test_empty_file(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    open(os.path.join(folder, "u.data"), "w").close()
    with pytest.raises(DataError, match=r"u\.data: the file is empty"):
        read_movielens(folder)


def test_rating_of_unknown_movie_names_the_id_and_line(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    _replace_line(os.path.join(folder, "u.data"), 5, f"{tiny.ratings.user_id[4]}\t99999\t3\t881250949")
    with pytest.raises(DataError, match=r"u\.data, line 5: movie id 99999 is not in u\.item"):
        read_movielens(folder)


def test_rating_of_unknown_user(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    _replace_line(os.path.join(folder, "u.data"), 9, f"77777\t{tiny.ratings.movie_id[8]}\t3\t881250949")
    with pytest.raises(DataError, match=r"line 9: user id 77777 is not in u\.user"):
        read_movielens(folder)


def test_missing_catalog_file(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    os.remove(os.path.join(folder, "u.item"))
    with pytest.raises(DataError, match="u.item is missing"):
        read_movielens(folder)


def test_wrong_csv_header(tmp_path, tiny):
    folder = write_csv(tiny, str(tmp_path / "csv"))
    _replace_line(os.path.join(folder, "ratings.csv"), 1, "user,item,score,time")
    with pytest.raises(DataError, match=r"ratings\.csv, line 1: expected the header userId,movieId,rating,timestamp"):
        read_movielens(folder)


def test_malformed_ml1m_movie_line(tmp_path, tiny):
    folder = write_ml1m(tiny, str(tmp_path / "ml-1m"))
    _replace_line(os.path.join(folder, "movies.dat"), 4, "4::Only a title")
    with pytest.raises(DataError, match=r"movies\.dat, line 4: expected 3 '::'-separated fields"):
        read_movielens(folder)


def test_error_inside_zip_names_the_member(tmp_path, tiny):
    folder = _ml100k(tmp_path, tiny)
    _replace_line(os.path.join(folder, "u.data"), 2, "garbage")
    archive = zip_folder(folder, str(tmp_path / "ml-100k.zip"))
    with pytest.raises(DataError, match=r"ml-100k\.zip:ml-100k/u\.data, line 2"):
        load_dataset(archive)


def test_tfds_offline_fails_with_one_clear_sentence(monkeypatch):
    from twostage.data import tfds_source

    monkeypatch.setattr(tfds_source, "_reachable", lambda url, timeout=5.0: False)
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: False)
    with pytest.raises(DataError, match=r"cannot download movielens/100k-ratings: .* --data PATH"):
        load_dataset("movielens/100k-ratings")


def test_unknown_tfds_config():
    with pytest.raises(DataError, match="unknown TFDS source 'movielens/5k'"):
        load_dataset("movielens/5k")


def test_duplicate_movie_id_names_both_lines(tmp_path, tiny):
    folder = write_csv(tiny, str(tmp_path / "csv"))
    path = os.path.join(folder, "movies.csv")
    lines = open(path).read().splitlines()
    first_id = lines[1].split(",")[0]
    _replace_line(path, 4, f"{first_id},Another Title (1990),Drama")
    with pytest.raises(DataError, match=rf"movies\.csv, line 4: movie id {first_id} appears twice \(first on line 2\)"):
        read_movielens(folder)


def test_tfds_ratings_are_converted_to_the_common_schema(monkeypatch):
    """The Colab path, with a prepared builder stood in for the download."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    genre_names = ["Action", "Adventure", "Animation", "Children", "Comedy", "Unknown"]
    rows = {
        "user_id": [b"1", b"2", b"1"], "movie_id": [b"10", b"20", b"20"],
        "movie_title": [b"Heat (1995)", "Amélie (2001)".encode(), "Amélie (2001)".encode()],
        "movie_genres": tf.ragged.constant([[0, 1], [4], [4]]),
        "user_rating": [4.0, 5.0, 3.0], "timestamp": [3, 1, 2],
        "raw_user_age": [33.0, 19.0, 33.0], "bucketized_user_age": [25.0, 18.0, 25.0],
        "user_gender": [True, False, True], "user_occupation_text": [b"writer", b"student", b"writer"],
        "user_zip_code": [b"94110", b"10001", b"94110"],
    }

    class Builder:
        builder_config = type("C", (), {"download_url": "https://files.grouplens.org/x.zip"})()
        info = type("I", (), {"features": {"movie_genres": type("S", (), {"feature": type(
            "L", (), {"names": genre_names})()})(), "user_gender": None}})()

        def is_prepared(self):
            return True

        def as_dataset(self, split):
            return tf.data.Dataset.from_tensor_slices(rows)

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: Builder())
    data = load_dataset("movielens/100k-ratings")
    assert data.ratings.user_id.tolist() == ["1", "2", "1"]
    assert data.ratings.rating.tolist() == [4.0, 5.0, 3.0]
    assert data.movies.movie_id.tolist() == ["10", "20"]
    assert data.movies.title.tolist() == ["Heat (1995)", "Amélie (2001)"]
    assert data.movies.genres == (("Action", "Adventure"), ("Comedy",))
    assert data.movies.year.tolist() == [1995, 2001]
    assert data.users.user_id.tolist() == ["1", "2"] and data.users.gender.tolist() == ["M", "F"]
    assert data.users.age.tolist() == [25, 18] and data.rating_scale == (1.0, 5.0)
