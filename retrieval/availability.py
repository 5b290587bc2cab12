"""Whether a user's lists are asked as of their last training rating, chosen on validation.

A movie first rated after a user's last rating was not in the catalog while they were rating.
On ml-100k's random splits, leaving such movies out of the lists raised validation NDCG@10
(docs/quality.md); on a split that holds out each user's latest ratings it would hide the
very movies they went on to rate. So the choice is made per run, on the validation part.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from twostage.data.availability import first_rated, last_rated
from twostage.data.metrics import HeldOutEvaluator
from twostage.data.schema import Ratings

# The validation figure that decides, as for the blend weight (the final list's head).
CHOICE_METRIC = "ndcg@10"


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
