"""The pipeline: data -> retrieval -> ranking -> index -> one SavedModel."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import shutil
import time

from twostage.data import DataConfig, MovieLensData
from twostage.data.prepared import Prepared, prepare
from twostage.data.splits import SplitConfig
from twostage.data.errors import ConfigError
from twostage.data.metrics import rating_counts
from twostage.data.synthetic import SyntheticConfig
from twostage.modeling.distribute import Cluster, default_cluster
from twostage.modeling.distribute_config import DistributeConfig
from twostage.modeling.training import TrainingRun
from twostage.ranking.config import RankingConfig
from twostage.ranking.train import train_ranking
from twostage.retrieval.config import IndexConfig, RetrievalConfig
from twostage.retrieval.train import train_retrieval
from twostage.blend import BlendChoice, candidate_pairs, fit_blend, formula
from twostage.serving.artifact.assemble import assemble, assemble_history_module
from twostage.serving.artifact.export import export_module
from twostage.serving.artifact.layout import check_export_root, check_index_over_newest
from twostage.serving.config import ServingConfig
from twostage.serving.graph.candidate_ranking import FinalBlend

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
    distribute: DistributeConfig = DistributeConfig()

    def for_request_history(self) -> "PipelineConfig":
        """These settings for an export whose requests carry the user's history: both stages
        without user ids, the rating model weighing the history by its ratings."""
        if self.retrieval.use_user_id:
            raise ConfigError("an export whose requests carry the history needs a query tower without user ids "
                              "(retrieval use_user_id False, the multinomial loss's default)")
        if self.ranking.architecture != "default":
            raise ConfigError(f"an export whose requests carry the history rates with the default ranking "
                              f"architecture, not {self.ranking.architecture!r}")
        return dataclasses.replace(
            self, retrieval=dataclasses.replace(self.retrieval, use_user_id=False),
            ranking=dataclasses.replace(self.ranking, use_user_id=False, history_ratings=True),
            serving=dataclasses.replace(self.serving, request_history=True))


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
    """Both trained stages and the data they were trained on, before any export.

    ``blend`` is the final score's form, fitted on the validation candidates' scores.
    """

    config: PipelineConfig
    prepared: Prepared
    retrieval: object
    ranking: object
    blend: BlendChoice
    train_seconds: float
    stages: dict = dataclasses.field(default_factory=dict)
    cluster: Cluster = dataclasses.field(default_factory=default_cluster)

    @property
    def final_blend(self) -> FinalBlend:
        """The served blend: the fitted one on the served retrieval scores' spread
        (TrainedRetrieval.score_spread), with the whole training part's popularity."""
        return self.blend.served(rating_counts(self.prepared.movies.movie_id, self.prepared.train),
                                 self.retrieval.score_spread)


def train_stages(config: PipelineConfig, data: MovieLensData | None = None,
                 run: TrainingRun | None = None) -> TrainedStages:
    """Trains both stages on the training part and chooses the blend on validation.

    Args:
      config: the run's settings.
      data: already-loaded data (else loaded from config.data.source).
      run: the strategy, backups and TensorBoard folder (default: this process alone).

    Returns:
      The trained stages, ready to export (once or several times, with different indexes).
    """
    run = run or TrainingRun()
    config.ranking.check_workers(run.cluster.several_workers)  # before retrieval trains, not after
    start = time.perf_counter()
    stages = StageLog()
    prepared = prepare(config.data, data)
    stages.done("prepare")
    retrieval = train_retrieval(prepared, config.retrieval, candidates=config.serving.num_candidates, run=run)
    stages.done("retrieval", retrieval.fit.examples_per_second)
    ranking = train_ranking(prepared, config.ranking, run=run,
                            validation_pairs=candidate_pairs(retrieval.validation_candidates, prepared.movies))
    stages.done("ranking", ranking.fit.examples_per_second)
    blend = fit_blend(retrieval.validation_candidates, ranking.validation_predictions,
                      rating_counts(prepared.movies.movie_id, prepared.fit))
    stages.done("blend")
    trained = TrainedStages(config, prepared, retrieval, ranking, blend, time.perf_counter() - start,
                            stages.record, run.cluster)
    log.info("final list: %s, fitted on validation (NDCG@10 %.4f; retrieval alone %.4f), served on the served "
             "scores' spread (%.3f times the validation model's)",
             formula(blend.rating_weight, blend.popularity_weight, blend.usual_weight),
             blend.figures["blend"]["ndcg@10"], blend.figures["retrieval"]["ndcg@10"], retrieval.score_spread)
    return trained


def _fit_record(fit) -> dict:
    """What the export's metadata keeps of a stage's fit (modeling.training.FitResult)."""
    return {"best_epoch": fit.best_epoch, "seconds": fit.seconds, "history": fit.history}


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
    final_blend = trained.final_blend
    if config.serving.request_history:
        module, index_description = assemble_history_module(retrieval.query_tower, retrieval.candidate_tower,
                                                            ranking.model, prepared, index_config, config.serving,
                                                            final_blend)
        tables = None
    else:
        module, index_description, tables = assemble(retrieval.query_tower, retrieval.candidate_tower,
                                                     ranking.model, prepared, index_config, config.serving,
                                                     final_blend)
    metadata = {
        "format": METADATA_FORMAT,
        "data": {**data_source_record(config.data), "name": data.name, "rating_scale": list(data.rating_scale),
                 "num_ratings": len(data.ratings), "merged_ratings": data.merged_ratings,
                 "num_train": len(prepared.train),
                 "num_movies": len(data.movies), "user_features": sorted(prepared.vocabularies.user_features),
                 "feature_values": {name: list(values) for name, values in prepared.vocabularies.user_features.items()}},
        "retrieval": {"config": dataclasses.asdict(retrieval.config), **_fit_record(retrieval.fit),
                      **({"ease": retrieval.ease.record()} if retrieval.ease is not None else {}),
                      **({"partners": list(retrieval.partners)} if retrieval.partners else {})},
        "ranking": {"config": dataclasses.asdict(ranking.config), **_fit_record(ranking.fit),
                    **({"autorec": {"weight": ranking.autorec_weight, **_fit_record(ranking.autorec_fit)}}
                       if ranking.autorec_fit is not None else {})},
        "index": index_description,
        **({"availability": retrieval.availability.record()} if retrieval.availability is not None else {}),
        "blend": {"weight": final_blend.rating_weight, "score_spread": retrieval.score_spread,
                  **trained.blend.record()},
        "serving": dataclasses.asdict(config.serving),
        "distribute": {**trained.cluster.record(), **({"sharded_variables": {
            **retrieval.fit.sharded_variables, **ranking.fit.sharded_variables}} if trained.cluster.coordinated else {})},
        "train_seconds": trained.train_seconds,
        "stages": trained.stages,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = export_module(module, tables, out_dir, config.serving, metadata, index_config.kind,
                         movie_id=str(prepared.movies.movie_id[0]))
    return TrainResult(export_path=path, metadata=metadata, rating_model=ranking.model, rating_inputs=ranking.inputs)


def backup_folder(out_dir: str, model_name: str) -> str:
    """Where a run exporting under ``out_dir`` keeps its per-epoch backups until it exports."""
    return os.path.join(out_dir, f".{model_name}-backup")


def _run_record(config: PipelineConfig) -> dict:
    return json.loads(json.dumps({**dataclasses.asdict(config), "data": data_source_record(config.data)},
                                 default=str))


def _holds_epochs(folder: str) -> bool:
    """Whether ``folder`` holds a backup of at least one finished epoch (one folder per fit)."""
    return os.path.isdir(folder) and any(os.path.isdir(os.path.join(folder, name)) for name in os.listdir(folder))


def _remove_backup(folder: str, shared: str, created: list[str]) -> None:
    """Removes this process's backup folder, then the shared backup folder once every
    worker's is gone, then the folders this run created, once empty."""
    shutil.rmtree(folder, ignore_errors=True)
    for path in [shared, *reversed(created)]:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _backup_for(config: PipelineConfig, shared: str, cluster: Cluster, resume: bool) -> str:
    """This process's backup folder (``shared`` itself, or a worker's folder in it), checked
    against ``resume`` and the run it holds.

    Raises:
      ConfigError: a backup is there but ``resume`` is not set, or it is the backup of a run
        with other settings.
    """
    folder = shared if cluster.num_workers == 1 else os.path.join(shared, f"worker-{cluster.worker_index}")
    record_path = os.path.join(folder, "run.json")
    record = _run_record(config)
    if _holds_epochs(folder):
        if not resume:
            raise ConfigError(f"{folder} holds the backup of an unfinished run: pass --resume to continue it, "
                              f"or remove that folder to start again")
        with open(record_path) as f:
            saved = json.load(f)
        changed = sorted(key for key in set(saved) | set(record) if saved.get(key) != record.get(key))
        if changed:
            raise ConfigError(f"--resume: the backup in {folder} is of a run with other settings ({', '.join(changed)} "
                              f"differ); resume with the same command, or remove that folder to start again")
        log.info("resuming the run backed up in %s", folder)
    else:
        if resume:
            log.info("--resume: no backup in %s; starting from the beginning", folder)
        os.makedirs(folder, exist_ok=True)
        with open(record_path, "w") as f:
            json.dump(record, f, indent=1)
    return folder


def train(config: PipelineConfig, out_dir: str, data: MovieLensData | None = None,
          scann_over_brute_force: bool = False, cluster: Cluster | None = None, resume: bool = False,
          tensorboard_dir: str | None = None) -> TrainResult | None:
    """Trains both stages on the training part and exports the SavedModel (see train_stages, export).

    Every epoch of every fit is backed up under ``out_dir`` (``backup_folder``) until the
    export is written; ``resume`` continues a run from there.

    Args:
      config: the run's settings.
      out_dir: export root; checked before training starts.
      data: already-loaded data (else loaded from config.data.source).
      scann_over_brute_force: add a ScaNN version even where the newest version is a
        brute-force one (which a stock TF Serving watching the folder would stop serving).
      cluster: the strategy (modeling.distribute.connect; default: this process alone).
      resume: continue the run backed up under ``out_dir``.
      tensorboard_dir: write each fit's per-epoch scalars there.

    Returns:
      What was exported; None in a worker other than the chief, which exports nothing.

    Raises:
      ModelError: ``out_dir`` cannot hold exports, or the ScaNN-over-brute-force case.
      ConfigError: a backup is in the way (see ``_backup_for``).
    """
    cluster = cluster or default_cluster()
    check_export_root(out_dir, config.serving.model_name)
    check_index_over_newest(out_dir, config.serving.model_name, config.index.kind, scann_over_brute_force)
    shared = backup_folder(out_dir, config.serving.model_name)
    created = [path for path in (out_dir, shared) if not os.path.exists(path)]
    backup = _backup_for(config, shared, cluster, resume)
    try:
        trained = train_stages(config, data, TrainingRun(cluster, backup, tensorboard_dir))
    except BaseException:
        if not _holds_epochs(backup):  # nothing worth resuming: leave no folders behind
            _remove_backup(backup, shared, created)
        raise
    result = None
    if cluster.is_chief:
        result = export(trained, out_dir)
    else:
        log.info("worker %d: training done; the chief (worker 0) writes the export", cluster.worker_index)
    _remove_backup(backup, shared, [])
    return result
