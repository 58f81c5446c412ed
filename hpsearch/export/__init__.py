"""From the best trial of a study to a finished model folder with its evidence.

The folder gets ``model.pt``, ``model.onnx``, ``predictions.csv`` (the evaluated split,
one row per image), ``metrics.json`` (computed from ``predictions.csv`` read back, with
a 95 % interval on every number), ``report.html`` with PNG copies of its figures, and
``MODEL_CARD.md``. The evaluated split is the held-out test split; a study without one is
evaluated on its validation split, and everything says so.

The winner is compared with the runner-up (the best complete trial of another
configuration) on the same test images; the runner-up's predictions go to
``predictions_runner_up.csv`` and the comparison into ``metrics.json``.

:func:`export_best` runs the stages in order: choose the weights (the trial's checkpoint
or a retrain) -> evaluate them (and the runner-up's checkpoint) -> write the model files
-> write the metrics -> render the report and the model card. What one stage hands the
next is a frozen dataclass.

:func:`~hpsearch.export.pipeline.export_best` lives in :mod:`hpsearch.export.pipeline`,
as it imports torch through its stages; the package itself offers only what reads a
study, so ``hpsearch best`` without ``--export`` starts without torch.
"""

from hpsearch.export.choose import best_summary, data_config

__all__ = ["best_summary", "data_config"]
