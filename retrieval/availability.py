"""Availability in time for retrieval: whether a user's lists are asked as of their last
training rating (chosen on validation), and which movies are no negatives in training.

A movie first rated after a user's last rating was not in the catalog while they were rating.
On ml-100k, leaving such movies out of the lists raised validation NDCG@10 (docs/quality.md);
on data whose users go on rating movies that arrive later it would hide the very movies they
went on to rate. So the choice is made per run, on the validation part.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from twostage.data.availability import NO_TIME, first_rated, last_rated
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.schema import Ratings

# The validation figure that decides, as for the blend weight (the final list's head).
CHOICE_METRIC = "ndcg@10"


@dataclasses.dataclass(frozen=True)
class RatingTimes:
    """When each catalog movie was first rated and each user last rated, in the ratings a
    model trains on: a movie first rated after a user's last rating could not have been one
    of theirs, so it is no negative for them (the multinomial loss leaves it out).

    Attributes:
      first: [catalog] int64 seconds (data.availability.ALWAYS: never rated).
      last: [user rows] int64 seconds, row 0 the unknown user (NO_TIME: nothing left out).
    """

    first: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, catalog_ids: np.ndarray, user_ids: np.ndarray, ratings: Ratings) -> "RatingTimes":
        """The times of ``ratings`` for a catalog and a user vocabulary (rows 1.., row 0 unknown)."""
        return cls(first_rated(catalog_ids, ratings), np.concatenate([[NO_TIME], last_rated(user_ids, ratings)]))


@dataclasses.dataclass(frozen=True)
class AvailabilityChoice:
    """Whether lists are asked as of each user's last training rating.

    Attributes:
      as_of_last_rating: the choice.
      forced: set by the configuration, not chosen.
      figures: {"off": metrics, "on": metrics} of the validation lists either way.
    """

    as_of_last_rating: bool
    forced: bool
    figures: dict

    def record(self) -> dict:
        """What the export's metadata keeps."""
        return {"as_of_last_rating": self.as_of_last_rating, "forced": self.forced, "validation": self.figures}


def choose_availability(evaluator: HeldOutEvaluator, catalog_ids: np.ndarray, fit: Ratings,
                        scorer: Callable[[np.ndarray], np.ndarray], depth: int,
                        forced: Optional[bool] = None) -> tuple[AvailabilityChoice, HeldOutEvaluator, tuple]:
    """Scores the validation users' top ``depth`` lists with and without availability.

    Args:
      evaluator: the validation part's evaluator (lists against the fit part).
      catalog_ids: the catalog, position order.
      fit: the ratings the validation lists are asked against (times of first and last rating).
      scorer: user ids -> [users, catalog] retrieval scores.
      depth: the candidates per user kept.
      forced: take this choice whatever validation says (None: choose).

    Returns:
      The choice, the evaluator of the chosen lists, and those lists (columns, scores), each
      [validation users, depth].
    """
    timed = evaluator.as_of(first_rated(catalog_ids, fit), last_rated(evaluator.user_ids, fit))
    lists = {"off": evaluator.top_unseen(scorer, depth), "on": timed.top_unseen(scorer, depth)}
    ks = (10, min(100, depth))
    figures = {name: evaluator.ranked_list_metrics(columns, ks) for name, (columns, _) in lists.items()}
    chosen = forced if forced is not None else figures["on"][CHOICE_METRIC] > figures["off"][CHOICE_METRIC]
    choice = AvailabilityChoice(bool(chosen), forced is not None, figures)
    return choice, (timed if chosen else evaluator), lists["on" if chosen else "off"]
