"""Per-epoch backups of a training run, so that a crash or a Ctrl-C costs at most one epoch.

A run is a sequence of fits (each stage chooses its epochs, then may refit). Each fit keeps,
after every epoch, a checkpoint of its model and optimizer (the random generators of its
layers included, so a resumed run repeats exactly what an uninterrupted one does) and the
state of its epoch choice: the history, the best epoch and that epoch's weights.
"""

from __future__ import annotations

import glob
import json
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf

KEPT_EPOCHS = 2  # workers of a cluster may stop one epoch apart: each keeps the last two


class FitBackup:
    """The backup of one fit: ``save`` after every epoch, ``restore`` when resuming.

    Args:
      directory: this fit's folder (created on the first save).
    """

    def __init__(self, directory: str):
        self.directory = directory

    def _checkpoint(self, model: tf.keras.Model) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(model=model, optimizer=model.optimizer)

    def _state_path(self, epoch: int) -> str:
        return os.path.join(self.directory, f"state-{epoch}.json")

    def epochs(self) -> List[int]:
        """The epochs backed up, oldest first."""
        found = glob.glob(os.path.join(self.directory, "state-*.json"))
        return sorted(int(os.path.basename(path)[len("state-"):-len(".json")]) for path in found)

    def state(self, epoch: Optional[int] = None) -> Optional[dict]:
        """The state saved with ``epoch`` (default: the last one backed up), or None."""
        if epoch is None:
            epochs = self.epochs()
            if not epochs:
                return None
            epoch = epochs[-1]
        if not os.path.exists(self._state_path(epoch)):
            return None
        with open(self._state_path(epoch)) as f:
            return json.load(f)

    def restore(self, model: tf.keras.Model, epoch: Optional[int] = None) -> Optional[dict]:
        """Puts ``model`` (built, variables created) back at the end of ``epoch``.

        Args:
          model: the model, its optimizer's variables created.
          epoch: a backed-up epoch (default: the last one).

        Returns:
          The saved state (``epoch``, ``finished`` and what the caller saved), with
          ``best_weights`` loaded, or None when there is nothing to resume.
        """
        state = self.state(epoch)
        if state is None:
            return None
        self._checkpoint(model).read(os.path.join(self.directory, state["checkpoint"])).assert_consumed()
        if state.get("best_weights"):
            with np.load(os.path.join(self.directory, state["best_weights"])) as saved:
                state["best_weights"] = [saved[f"w{i}"] for i in range(len(saved.files))]
        return state

    def save(self, model: tf.keras.Model, epoch: int, state: dict,
             best_weights: Optional[List[np.ndarray]] = None, finished: bool = False) -> None:
        """Records the end of ``epoch``: model, optimizer, ``state`` (JSON), new best weights.

        The epoch's state file is written last, in one rename: a crash in between leaves
        the previous epochs' backups whole.
        """
        os.makedirs(self.directory, exist_ok=True)
        previous = self.state() or {}
        checkpoint = f"epoch-{epoch}{'-final' if finished else ''}"
        self._checkpoint(model).write(os.path.join(self.directory, checkpoint))
        best = previous.get("best_weights")
        if best_weights is not None:
            best = f"best-{epoch}.npz"
            np.savez(os.path.join(self.directory, best), **{f"w{i}": w for i, w in enumerate(best_weights)})
        record = {**state, "epoch": epoch, "finished": finished, "checkpoint": checkpoint, "best_weights": best}
        temporary = self._state_path(epoch) + ".new"
        with open(temporary, "w") as f:
            json.dump(record, f)
        os.replace(temporary, self._state_path(epoch))
        self._forget_older()

    def _forget_older(self) -> None:
        """Removes what the last ``KEPT_EPOCHS`` states no longer refer to."""
        epochs = self.epochs()
        kept = [self.state(e) for e in epochs[-KEPT_EPOCHS:]]
        keep = {name for state in kept for name in (state["checkpoint"], state["best_weights"]) if name}
        for epoch in epochs[:-KEPT_EPOCHS]:
            os.remove(self._state_path(epoch))
        for path in glob.glob(os.path.join(self.directory, "epoch-*")) + glob.glob(os.path.join(self.directory,
                                                                                               "best-*.npz")):
            name = os.path.basename(path)
            if name not in keep and name.split(".")[0] not in keep:
                os.remove(path)
