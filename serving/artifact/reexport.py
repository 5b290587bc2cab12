"""Exporting an exported model again, with another index, from the SavedModel alone.

The SavedModel holds everything the serving graph is made of: the lookup tables, the
query encoder and the rating scorer (each behind a fixed input signature, so their
restored functions can be saved again). Only the index is rebuilt, from the candidate
embeddings, so ``twostage export --index brute-force`` turns a ScaNN export into one that
stock TF Serving loads, with no training data and no retraining.
"""

from __future__ import annotations

import os
import time
from typing import Optional

import numpy as np

from twostage.data.availability import ALWAYS
from twostage.data.features import UNKNOWN_USER_ROW
from twostage.data.history import ragged_table
from twostage.ranking.scorers import RatingScorer
from twostage.retrieval.config import IndexConfig
from twostage.serving.artifact.assemble import assemble_module
from twostage.serving.artifact.export import export_module
from twostage.serving.artifact.layout import ModelError, check_export_root, read_metadata, resolve_model_path
from twostage.serving.artifact.loading import load_export
from twostage.serving.config import ServingConfig
from twostage.serving.graph.candidate_ranking import FinalBlend
from twostage.serving.graph.tables import ServingTables
from twostage.serving.responses import string_array

# What a restored rating scorer may lack: a variable saved as None is not saved at all.
_OPTIONAL_SCORER_TABLES = ("rating_range", "highest_ratings")


def tables_of(loaded) -> ServingTables:
    """The lookup tables of a loaded export."""
    return ServingTables(
        movie_ids=string_array(loaded.movie_ids.numpy()), titles=string_array(loaded.titles.numpy()),
        candidate_embeddings=loaded.candidate_embeddings.numpy(), user_ids=string_array(loaded.user_ids.numpy()),
        user_embeddings=np.delete(loaded.user_embeddings.numpy(), UNKNOWN_USER_ROW, axis=0),
        history=ragged_table(loaded.history_values.numpy(), loaded.history_row_splits.numpy()),
        fans=ragged_table(loaded.fan_values.numpy(), loaded.fan_row_splits.numpy()),
        popularity=loaded.popularity.numpy().astype(np.float64),
        # Exports from before request times: every movie available at any time.
        available_from=_available_from(loaded))


def _available_from(loaded) -> np.ndarray:
    """The movies' first training ratings; exports from before request times keep none, and
    every movie is available at any time for them."""
    kept = getattr(loaded, "available_from", None)
    return kept.numpy() if kept is not None else np.full(len(loaded.movie_ids.numpy()), ALWAYS, np.int64)


def final_blend_of(loaded, metadata: dict) -> FinalBlend:
    """A loaded export's final blend; exports from before the movie terms keep none (the same
    for every movie)."""
    terms = getattr(loaded, "movie_terms", None)
    if terms is None:
        return FinalBlend.rating_only(metadata["blend"]["weight"], len(loaded.movie_ids.numpy()))
    return FinalBlend(metadata["blend"]["weight"], terms.numpy())


def restored_rating_scorer(restored) -> RatingScorer:
    """A loaded export's rating scorer as a :class:`RatingScorer`: the optional tables its
    export does not hold (an unbounded output; an export from before they were kept) are None."""
    for name in _OPTIONAL_SCORER_TABLES:
        if name not in dir(restored):
            setattr(restored, name, None)
    return restored


def export_again(path: str, index: IndexConfig, out_dir: Optional[str] = None) -> str:
    """Exports the newest version under ``path`` again with ``index`` as the next version.

    Args:
      path: an export (the --out of train, a model folder or a version folder).
      index: the index to build.
      out_dir: export root for the new version (default: the one ``path`` is in).

    Returns:
      The new version's folder.
    """
    version_dir = resolve_model_path(path)
    serving_config = ServingConfig(**read_metadata(version_dir)["serving"])
    if serving_config.request_history:
        raise ModelError(f"{version_dir} serves requests that carry the history: its index cannot be rebuilt "
                         f"from the export alone; train again with the index wanted (twostage train --index)")
    out_dir = out_dir or os.path.dirname(os.path.dirname(os.path.abspath(version_dir)))
    check_export_root(out_dir, serving_config.model_name)
    loaded, version_dir, metadata = load_export(version_dir)
    tables = tables_of(loaded)
    scorer = restored_rating_scorer(loaded.rating_scorer)
    module, description = assemble_module(tables, loaded.query_encoder, scorer, index, serving_config,
                                          final_blend_of(loaded, metadata))
    metadata = {**metadata, "index": description, "exported_from": os.path.abspath(version_dir),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return export_module(module, tables, out_dir, serving_config, metadata, index.kind,
                         movie_id=str(tables.movie_ids[0]))
