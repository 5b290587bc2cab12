"""Typed configuration of the exported model."""

from __future__ import annotations

import dataclasses

from twostage.data.errors import ConfigError, check_at_least


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the exported SavedModel does at request time.

    Attributes:
      num_candidates: candidates retrieval hands to the ranking model per user.
      max_k: largest k a request may ask for (at most num_candidates).
      model_name: folder name under the export directory (TF Serving's model name).
      max_exclusions: movie ids a request may exclude on top of the user's training history
        while still getting k results (the index is asked for that many more neighbours).
      liked_rating: a training rating at least this high makes a user a fan of the movie
        ("people who liked this also liked").
      request_history: export a model whose requests carry each user's rated movies (and
        ratings) instead of a user id: it keeps no per-user table, and serves users training
        never saw from their history alone (serving.graph.history_module).
    """

    num_candidates: int = 100
    max_k: int = 100
    max_exclusions: int = 100
    model_name: str = "twostage"
    liked_rating: float = 4.0
    request_history: bool = False

    def __post_init__(self):
        check_at_least("num_candidates", self.num_candidates)
        check_at_least("max_exclusions", self.max_exclusions, lowest=0)
        if not 1 <= self.max_k <= self.num_candidates:
            raise ConfigError(f"max_k must be between 1 and num_candidates ({self.num_candidates}), got {self.max_k}")
