"""The pipeline: data -> retrieval -> ranking -> index -> one SavedModel."""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import time

from twostage.data import DataConfig, MovieLensData
from twostage.data.prepared import Prepared, prepare
from twostage.data.splits import SplitConfig
from twostage.data.synthetic import SyntheticConfig
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import train_ranking
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.retrieval.train import train_retrieval
from twostage.blend import candidate_pairs, choose_blend_weight
from twostage.serving.artifact.assemble import assemble
from twostage.serving.artifact.export import export_module
from twostage.serving.artifact.layout import check_export_root, check_index_over_newest
from twostage.serving.config import ServingConfig

log = logging.getLogger("twostage")

METADATA_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a training run, one typed config per stage."""

    data: DataConfig = DataConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    ranking: RankingConfig = RankingConfig()
    index: IndexConfig = IndexConfig()
    serving: ServingConfig = ServingConfig()


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What ``train`` produced."""

    export_path: str
    metadata: dict
    rating_model: object = None
    rating_inputs: object = None


def data_source_record(config: DataConfig) -> dict:
    """How to load the same data and split again (saved with the export)."""
    source = config.source
    if os.path.exists(source):
        source = os.path.abspath(source)
    record = {"source": source, "split": dataclasses.asdict(config.split),
              "validation_fraction": config.validation_fraction}
    if config.source == "synthetic":
        record["synthetic"] = dataclasses.asdict(config.synthetic)
    return record


def data_config_from_record(record: dict) -> DataConfig:
    """The inverse of :func:`data_source_record`."""
    return DataConfig(source=record["source"], split=SplitConfig(**record["split"]),
                      validation_fraction=record["validation_fraction"],
                      synthetic=SyntheticConfig(**record.get("synthetic", {})))


def peak_rss_bytes() -> int:
    """The most memory this process has held so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageLog:
    """Seconds, training throughput and peak memory of each stage of a run (saved in the
    export's metadata, so that a user can see where a run's time and memory went)."""

    def __init__(self):
        self.record, self.start = {}, time.perf_counter()

    def done(self, stage: str, examples_per_second: float | None = None):
        now = time.perf_counter()
        entry = {"seconds": round(now - self.start, 3), "peak_rss_bytes": peak_rss_bytes()}
        if examples_per_second:
            entry["examples_per_second"] = round(examples_per_second, 1)
        self.record[stage], self.start = entry, now
        log.info("%s done in %.1fs%s; peak memory so far %.2f GB", stage, entry["seconds"],
                 f" ({examples_per_second:,.0f} training examples/s)" if examples_per_second else "",
                 entry["peak_rss_bytes"] / 1e9)


@dataclasses.dataclass
class TrainedStages:
    """Both trained stages and the data they were trained on, before any export."""

    config: PipelineConfig
    prepared: Prepared
    retrieval: object
    ranking: object
    blend_weight: float
    blend_figures: dict
    train_seconds: float
    stages: dict = dataclasses.field(default_factory=dict)


def train_stages(config: PipelineConfig, data: MovieLensData | None = None) -> TrainedStages:
    """Trains both stages on the training part and chooses the blend on validation.

    Args:
      config: the run's settings.
      data: already-loaded data (else loaded from config.data.source).

    Returns:
      The trained stages, ready to export (once or several times, with different indexes).
    """
    start = time.perf_counter()
    stages = StageLog()
    prepared = prepare(config.data, data)
    stages.done("prepare")
    retrieval = train_retrieval(prepared, config.retrieval, candidates=config.serving.num_candidates)
    stages.done("retrieval", retrieval.fit.examples_per_second)
    ranking = train_ranking(prepared, config.ranking,
                            validation_pairs=candidate_pairs(retrieval.validation_candidates, prepared.movies))
    stages.done("ranking", ranking.fit.examples_per_second)
    weight, blend_figures = choose_blend_weight(retrieval.validation_candidates, ranking.validation_predictions)
    stages.done("blend")
    log.info("final list: retrieval score + %g x predicted rating (validation NDCG@10 %.4f; retrieval alone "
             "%.4f, rating alone %.4f)", weight, blend_figures[weight]["ndcg@10"], blend_figures[0.0]["ndcg@10"],
             blend_figures[max(blend_figures)]["ndcg@10"])
    return TrainedStages(config, prepared, retrieval, ranking, weight, blend_figures, time.perf_counter() - start,
                         stages.record)


def export(trained: TrainedStages, out_dir: str, index: IndexConfig | None = None) -> TrainResult:
    """Builds the index and exports the SavedModel as the next version under out_dir.

    Args:
      trained: what train_stages returned.
      out_dir: export root; the model lands in out_dir/<model_name>/<next version>/.
      index: the index flavour (default: the config's).

    Returns:
      The export path and the metadata saved with it.
    """
    config, prepared, retrieval, ranking = trained.config, trained.prepared, trained.retrieval, trained.ranking
    data = prepared.data
    index_config = index or config.index
    module, index_description, tables = assemble(retrieval.query_tower, retrieval.candidate_tower, ranking.model,
                                                 prepared, index_config, config.serving, trained.blend_weight)
    metadata = {
        "format": METADATA_FORMAT,
        "data": {**data_source_record(config.data), "name": data.name, "rating_scale": list(data.rating_scale),
                 "num_ratings": len(data.ratings), "merged_ratings": data.merged_ratings,
                 "num_train": len(prepared.train),
                 "num_movies": len(data.movies), "user_features": sorted(prepared.vocabularies.user_features),
                 "feature_values": {name: list(values) for name, values in prepared.vocabularies.user_features.items()}},
        "retrieval": {"config": dataclasses.asdict(retrieval.config), "best_epoch": retrieval.fit.best_epoch,
                      "seconds": retrieval.fit.seconds, "history": retrieval.fit.history},
        "ranking": {"config": dataclasses.asdict(ranking.config), "best_epoch": ranking.fit.best_epoch,
                    "seconds": ranking.fit.seconds, "history": ranking.fit.history},
        "index": index_description,
        "blend": {"weight": trained.blend_weight,
                  "validation": {str(w): f for w, f in trained.blend_figures.items()}},
        "serving": dataclasses.asdict(config.serving),
        "train_seconds": trained.train_seconds,
        "stages": trained.stages,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = export_module(module, tables, out_dir, config.serving, metadata, index_config.kind)
    return TrainResult(export_path=path, metadata=metadata, rating_model=ranking.model, rating_inputs=ranking.inputs)


def train(config: PipelineConfig, out_dir: str, data: MovieLensData | None = None,
          scann_over_brute_force: bool = False) -> TrainResult:
    """Trains both stages on the training part and exports the SavedModel (see train_stages, export).

    Args:
      config: the run's settings.
      out_dir: export root; checked before training starts.
      data: already-loaded data (else loaded from config.data.source).
      scann_over_brute_force: add a ScaNN version even where the newest version is a
        brute-force one (which a stock TF Serving watching the folder would stop serving).

    Raises:
      ModelError: ``out_dir`` cannot hold exports, or the ScaNN-over-brute-force case.
    """
    check_export_root(out_dir, config.serving.model_name)
    check_index_over_newest(out_dir, config.serving.model_name, config.index.kind, scann_over_brute_force)
    return export(train_stages(config, data), out_dir)
