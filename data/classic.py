"""The strongest classic recommenders, as baselines every report is measured against.

* **EASE** (Steck 2019, "Embarrassingly Shallow Autoencoders"): an item x item weight matrix
  in closed form, B = I - P / diag(P) with P = (X'X + lambda I)^-1 and a zero diagonal; a
  user's scores are their binary history times B. Its lambda is chosen on the validation part.
* **ALS**: implicit-feedback matrix factorisation (Hu, Koren and Volinsky 2008), the model
  the Spark-based system this grew out of used, fitted by the ``implicit`` library (a
  well-kept, multi-threaded implementation) rather than written here. Its regularisation is
  chosen on the validation part.

Each ``fit_*`` takes a ``Prepared``: settings are chosen by fitting on the fit part and
scoring the validation part, then the model is refitted on the whole training part. The
test part is never looked at. Scorers map user ids to [users, catalog] scores for
``HeldOutEvaluator``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse as sparse

from twostage.data.errors import TwostageError
from twostage.data.metrics import VALIDATION_USERS, HeldOutEvaluator
from twostage.data.schema import Ratings

log = logging.getLogger("twostage")

# EASE inverts a dense item x item matrix: past this many movies it would not fit (30,000
# movies: 7.2 GB in float64, twice that while inverting).
MAX_EASE_MOVIES = 30_000
# Up to 6,400: generated ML-1M-shape data chose the largest of 50-800 and peaks at 3,200-6,400.
EASE_LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)
ALS_REGULARIZATIONS = (0.1, 1.0, 10.0, 100.0)
# The validation figure both choose their setting by.
CHOICE_METRIC = "ndcg@10"

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ClassicModel:
    """A fitted classic baseline.

    Attributes:
      name: "ease" or "als".
      setting: the chosen value (EASE's lambda, ALS's regularisation).
      validation: {setting: validation figures} for every setting tried.
      score: user ids -> [users, catalog] scores of the model refitted on the training part.
    """

    name: str
    setting: float
    validation: dict
    score: Scorer


def interaction_matrix(catalog_ids: np.ndarray, ratings: Ratings) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Binary [users, catalog] matrix of who rated what, and its user ids (sorted)."""
    users = ratings.users.used()
    rows = ratings.users.positions(users)
    cols = ratings.movies.positions(catalog_ids)
    keep = cols >= 0
    matrix = sparse.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                               shape=(len(users), len(catalog_ids)))
    matrix.data[:] = 1.0  # a pair given twice is still one interaction
    return matrix, users


def row_finder(users: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """User ids -> their rows in ``users`` order (-1 for a user the model has not seen)."""
    row_of = {u: i for i, u in enumerate(users.tolist())}
    return lambda user_ids: np.asarray([row_of.get(u, -1) for u in np.asarray(user_ids, dtype=str).tolist()],
                                       np.int64)


def histories_of(history: sparse.csr_matrix, rows_of: Callable[[np.ndarray], np.ndarray],
                 user_ids: np.ndarray) -> sparse.csr_matrix:
    """[users, catalog] rows of ``history`` for ``user_ids`` (``rows_of``: a ``row_finder`` of
    its users); a user it does not hold gets an empty row."""
    rows = rows_of(user_ids)
    return history[np.maximum(rows, 0)].multiply((rows >= 0)[:, None]).tocsr()


def ease_weights(history: sparse.csr_matrix, lam: float, gram: Optional[np.ndarray] = None) -> np.ndarray:
    """EASE's [catalog, catalog] item weights for a binary history and L2 weight ``lam``
    (``gram``: the history's X'X in float64, where it is already computed; left as it was)."""
    gram = (history.T @ history).toarray().astype(np.float64) if gram is None else gram
    diagonal = np.diag_indices_from(gram)
    gram[diagonal] += lam
    try:
        # X'X + lambda I is positive definite: inverted through its Cholesky factor, in half the
        # time of a general inverse (1.2 s against 2.6 s at 3,706 movies), the same to 1e-15.
        factor, info = scipy.linalg.lapack.dpotrf(gram, lower=True, clean=True)
        if info == 0:
            inverse, info = scipy.linalg.lapack.dpotri(factor, lower=True, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"X'X + {lam:g} I is not positive definite (LAPACK info {info})")
    finally:  # lambda taken back off in place, not added to a copy (a catalog-squared matrix)
        gram[diagonal] -= lam
    inverse += inverse.T  # the lower triangle mirrored (the upper one is zeros) ...
    inverse[diagonal] /= 2.0  # ... and the diagonal counted once
    weights = -inverse / np.diag(inverse)
    weights[diagonal] = 0.0
    return weights.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class EaseSpectrum:
    """EASE for any lambda from one eigendecomposition of the item Gram matrix X'X = V diag(e) V'.

    P = (X'X + lambda I)^-1 = (I - V diag(d) V') / lambda with d = e / (e + lambda), so off
    the diagonal EASE's weights B_ij = -P_ij / P_jj factor into an input side V diag(d) and an
    output side V / (lambda diag(P)): for every movie j a user has not rated, (x B)_j is
    (x V diag(d)) . (V_j / (lambda P_jj)). Truncated to the largest eigenvalues, the two sides
    are EASE's input and output item embeddings, which a two-tower model can carry.

    Attributes:
      eigenvalues: [k] largest first: XX''s positive ones (fewer users than movies), or every
        one of X'X, rounding's negative ones set to 0.
      eigenvectors: [catalog, k] their eigenvectors.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray

    @classmethod
    def of(cls, history: sparse.csr_matrix) -> "EaseSpectrum":
        """The spectrum of a binary [users, catalog] history, from the smaller of X'X and XX'.

        With fewer users than movies, XX' (users x users) has the same positive eigenvalues,
        and X'X's eigenvectors are X' U / sqrt(e): the cost is the cube of the smaller side.
        """
        if history.shape[0] < history.shape[1]:
            # Float64: X'X's eigenvectors divide by sqrt(e), which must not be rounding noise.
            history = history.astype(np.float64)
            values, vectors = np.linalg.eigh((history @ history.T).toarray())
            keep = values > 1e-9 * max(float(values.max(initial=0.0)), 1.0)
            values = values[keep]
            vectors = np.asarray(history.T @ vectors[:, keep]) / np.sqrt(values)
        else:
            # Every eigenpair of X'X itself, in float32 by LAPACK's divide and conquer: under half of
            # float64's time at ML-1M's 3,706 movies, and nothing is divided by a small eigenvalue
            # (docs/scale.md, "EASE in the towers at ML-1M shape").
            gram = (history.T @ history).astype(np.float32).toarray()  # co-rating counts, exact in float32
            values, vectors = scipy.linalg.eigh(gram, driver="evd", overwrite_a=True, check_finite=False)
            values = np.maximum(values, 0.0)
        return cls(values[::-1].copy(), np.ascontiguousarray(vectors[:, ::-1]))

    def factors(self, lam: float, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """EASE's input and output item embeddings, [catalog, min(rank, k)] each (float32).

        The output side's scale, 1 / (lambda P_jj), uses every eigenvalue, so only the
        product of the two sides is truncated.
        """
        shrunk = self.eigenvalues.astype(np.float64) / (self.eigenvalues + lam)
        # P_jj, at least 1 / (X'X_jj + lambda): summed in float64 (float32 eigenvectors) to keep that.
        diagonal = (1.0 - np.square(self.eigenvectors, dtype=np.float64) @ shrunk) / lam
        top = self.eigenvectors[:, :rank]
        return ((top * shrunk[:rank]).astype(np.float32),
                (top / (lam * diagonal)[:, None]).astype(np.float32))


class EaseOfPart:
    """EASE of one part's history, for any lambda: what every lambda shares is computed once.

    With fewer users than movies (a wide catalog) that is the history's spectrum from the
    users' side (``EaseSpectrum``), an eigendecomposition far smaller than the item x item
    inverse each lambda would otherwise take; otherwise it is the Gram matrix X'X, inverted
    once per lambda. Both score every movie exactly as ``ease_weights`` does.

    Args:
      catalog_ids: the catalog, in position order.
      ratings: the part EASE is fitted on.
      spectrum: decompose the history at any shape (the factors EASE in the towers carries),
        not only where it has fewer users than movies.
    """

    def __init__(self, catalog_ids: np.ndarray, ratings: Ratings, spectrum: bool = False):
        if len(catalog_ids) > MAX_EASE_MOVIES:
            raise TwostageError(f"EASE needs a dense {len(catalog_ids):,}^2 item matrix; it runs on catalogs of at "
                                f"most {MAX_EASE_MOVIES:,} movies")
        self.history, users = interaction_matrix(catalog_ids, ratings)
        self.rows_of = row_finder(users)
        spectrum = spectrum or self.history.shape[0] < self.history.shape[1]
        self.spectrum = EaseSpectrum.of(self.history) if spectrum else None
        self.gram = None if spectrum else (self.history.T @ self.history).toarray().astype(np.float64)

    def pooled(self, user_ids: np.ndarray, table: np.ndarray) -> np.ndarray:
        """[users, dim] the rows of ``table`` (one per catalog movie) summed over each user's
        history and divided by the square root of its length (as the towers pool EASE's factors)."""
        known = histories_of(self.history, self.rows_of, user_ids)
        count = np.maximum(np.asarray(known.sum(axis=1)).ravel(), 1.0)
        return np.asarray(known @ table) / np.sqrt(count)[:, None]

    def scorer(self, lam: float) -> Scorer:
        """User ids -> EASE scores of every catalog movie at L2 weight ``lam`` (a new user: zeros).

        The scorer holds the history and this lambda's weights, not ``self``: the Gram matrix
        or spectrum it was made from is freed with this object.
        """
        history, rows_of = self.history, self.rows_of
        if self.spectrum is None:
            weights = ease_weights(history, lam, self.gram)
            return lambda user_ids: np.asarray(histories_of(history, rows_of, user_ids) @ weights)
        input_factors, output_factors = self.spectrum.factors(lam, len(self.spectrum.eigenvalues))
        # The factors' product holds a diagonal that EASE constrains to zero: taken back off.
        diagonal = np.einsum("ik,ik->i", input_factors, output_factors)

        def score(user_ids: np.ndarray) -> np.ndarray:
            known = histories_of(history, rows_of, user_ids)
            return np.asarray(known @ input_factors) @ output_factors.T - known.multiply(diagonal).toarray()

        return score


def ease_scorer(catalog_ids: np.ndarray, train: Ratings, lam: float) -> Scorer:
    """User ids -> EASE scores of every catalog movie, the model fitted on ``train``."""
    return EaseOfPart(catalog_ids, train).scorer(lam)


def als_scorer(catalog_ids: np.ndarray, train: Ratings, regularization: float, factors: int = 64,
               iterations: int = 15, seed: int = 42) -> Scorer:
    """User ids -> ALS scores (user factors . item factors), fitted on ``train`` by ``implicit``."""
    import warnings

    from implicit.cpu.als import AlternatingLeastSquares

    history, users = interaction_matrix(catalog_ids, train)
    with warnings.catch_warnings():  # implicit's advice on BLAS threads, not a problem of the data
        warnings.simplefilter("ignore")
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, iterations=iterations,
                                        random_state=seed, calculate_training_loss=False)
        model.fit(history, show_progress=False)
    user_factors, item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
    rows_of = row_finder(users)

    def score(user_ids: np.ndarray) -> np.ndarray:
        rows = rows_of(user_ids)
        vectors = np.where((rows >= 0)[:, None], user_factors[np.maximum(rows, 0)], 0.0)
        return vectors @ item_factors.T

    return score


def _choose(name: str, make: Callable[[Ratings, float], Scorer], settings: Sequence[float], prepared) -> ClassicModel:
    """Fits ``make`` on the fit part for each setting, keeps the best on the validation part
    (by CHOICE_METRIC), and refits it on the whole training part."""
    evaluator = HeldOutEvaluator(prepared.movies.movie_id, prepared.fit, prepared.validation, VALIDATION_USERS)
    validation = {}
    for setting in settings:
        validation[setting] = evaluator.score_metrics(make(prepared.fit, setting), ks=(10, 100), batch_size=512)
        log.info("%s %g: validation %s %.4f", name, setting, CHOICE_METRIC, validation[setting][CHOICE_METRIC])
    best = max(settings, key=lambda s: validation[s][CHOICE_METRIC])
    return ClassicModel(name, best, validation, make(prepared.train, best))


def unavailable(name: str, num_movies: int) -> Optional[str]:
    """Why the classic ``name`` ("ease" or "als") cannot run on a catalog of this size, or None."""
    if name == "ease" and num_movies > MAX_EASE_MOVIES:
        return f"a catalog of {num_movies:,} movies is past EASE's {MAX_EASE_MOVIES:,} (its item x item matrix)"
    return None


def fit_ease(prepared, lambdas: Sequence[float] = EASE_LAMBDAS) -> ClassicModel:
    """EASE with its lambda chosen on the validation part (see the module docstring)."""
    catalog = prepared.movies.movie_id
    parts = {}

    def make(ratings: Ratings, lam: float) -> Scorer:
        if id(ratings) not in parts:  # one part at a time: the fit part's is freed for the training part's
            parts.clear()
            parts[id(ratings)] = EaseOfPart(catalog, ratings)
        return parts[id(ratings)].scorer(lam)

    return _choose("EASE lambda", make, lambdas, prepared)


def fit_als(prepared, regularizations: Sequence[float] = ALS_REGULARIZATIONS) -> ClassicModel:
    """ALS with its regularisation chosen on the validation part (see the module docstring)."""
    catalog = prepared.movies.movie_id
    return _choose("ALS regularization", lambda ratings, reg: als_scorer(catalog, ratings, reg), regularizations,
                   prepared)


# The classics every evaluation and report shows, by the name their figures go under.
CLASSICS = {"ease": fit_ease, "als": fit_als}
