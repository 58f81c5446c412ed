"""Training side of hpsearch: data, model, training loop, metrics.

Knows nothing of Optuna or wandb, and shows nothing: long steps report progress through
an ``on_progress(done, total)`` callback. Names are imported on first use, so that
``from trainer.errors import UserError`` (the command line does it) does not load torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CLASS_NAMES": "trainer.classes",
    "TrainConfig": "trainer.config",
    "Data": "trainer.data",
    "DataConfig": "trainer.config",
    "load_data": "trainer.data",
    "UserError": "trainer.errors",
    "FitResult": "trainer.training",
    "fit": "trainer.training",
    "classification_metrics": "trainer.metrics",
    "confusion": "trainer.metrics",
    "per_class_table": "trainer.metrics",
    "build_model": "trainer.model",
    "load_model": "trainer.inference",
    "predict_proba": "trainer.inference",
    "PrecisionChoice": "trainer.precision_probe",
    "resolve_trial_precision": "trainer.precision_probe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
