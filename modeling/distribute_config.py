"""The distribution setting of a run (no TensorFlow here: the command line reads it)."""

from __future__ import annotations

import dataclasses

from twostage.data.errors import check_choice

STRATEGIES = ("default", "mirrored", "multi-worker", "parameter-server")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """How training is spread over devices and machines.

    Attributes:
      strategy: "default" (this process, its first device), "mirrored" (every local GPU,
        ``MirroredStrategy``), "multi-worker" (``MultiWorkerMirroredStrategy`` over the
        workers of ``TF_CONFIG``) or "parameter-server" (``ParameterServerStrategy``: the
        chief of ``TF_CONFIG`` coordinates its workers, the embedding tables sharded over
        its parameter servers).
    """

    strategy: str = "default"

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
