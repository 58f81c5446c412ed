"""The study storage: opening it, riding out its faults, hpsearch's own tables beside
Optuna's, the artifact store, and the one place that touches Optuna's private API."""

from hpsearch.storage.connect import Heartbeat, check_sqlite_file, engine_kwargs, open_storage
from hpsearch.storage.urls import (
    DEFAULT_STORAGE,
    normalize_url,
    redact,
    redact_text,
    resolve_storage_url,
    secret_values,
)

__all__ = [
    "DEFAULT_STORAGE",
    "Heartbeat",
    "check_sqlite_file",
    "engine_kwargs",
    "normalize_url",
    "open_storage",
    "redact",
    "redact_text",
    "resolve_storage_url",
    "secret_values",
]
