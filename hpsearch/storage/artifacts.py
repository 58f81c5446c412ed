"""Files attached to trials (checkpoints, exported models, reports) with Optuna's artifact store.

The store keeps the bytes (``artifacts/`` of the artifact location: ``--artifacts``, else
the workdir); the study storage
keeps which artifact belongs to which trial, so optuna-dashboard can list and serve
them next to the trial. Each attached file is also named in a user attribute
``"artifact:<file name>"`` -> artifact id, readable by ``optuna trials`` and plain code.

Optuna refuses to change a finished trial. A file attached after the trial ended
(an export, a report) is stored as an artifact of the study instead, and named in
the study's user attribute ``"artifact:trial-<number>:<file name>"``. Both kinds are
listed by ``optuna.artifacts.get_all_artifact_meta`` (of the trial, of the study).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.paths import Workdir
from hpsearch.storage.optuna_api import study_id, study_storage, trial_id
from trainer.errors import UserError

if TYPE_CHECKING:
    from optuna.artifacts import FileSystemArtifactStore

ATTR_PREFIX = "artifact:"


def open_artifact_store(
    workdir_or_path: Workdir | str | os.PathLike[str],
) -> FileSystemArtifactStore:
    """A ``FileSystemArtifactStore`` on ``Workdir.artifacts`` or on the folder given.

    The folder is created if needed. URLs (``s3://``, ``gs://``) are not supported yet.
    """
    from optuna.artifacts import FileSystemArtifactStore

    if isinstance(workdir_or_path, Workdir):
        root = workdir_or_path.artifacts
    else:
        text = os.fspath(workdir_or_path)
        if "://" in text:
            raise UserError(f"artifact store {text!r}: only a local folder is supported")
        root = Path(text).absolute()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create artifact folder {root}: {err.strerror}") from None
    return FileSystemArtifactStore(root)


def attach_file(study: Any, trial: Any, path: str | os.PathLike[str], artifact_store: Any) -> str:
    """Upload ``path`` to ``artifact_store`` as an artifact of ``trial``; its artifact id.

    ``trial`` is a trial id (its id in the storage, not its number), a FrozenTrial
    or a running ``optuna.Trial``. While the trial runs, the file becomes a trial
    artifact and the trial gets user attr ``"artifact:<file name>"``; once it is
    finished, see the module docstring.
    """
    import optuna

    path = os.fspath(path)
    if isinstance(trial, optuna.Trial) and study_id(trial.study) == study_id(study):
        # A trial being run by this process (the objective's): running by construction,
        # so no read of it first (two queries a trial, which a study of many trials feels).
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cannot attach {path!r} to trial {trial.number}: no such file")
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=path, study_or_trial=trial
        )
        key = ATTR_PREFIX + os.path.basename(path)
        study_storage(study).set_trial_user_attr(trial_id(trial), key, artifact_id)
        return artifact_id
    frozen = _frozen(study, trial)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cannot attach {path!r} to trial {frozen.number}: no such file")
    storage = study_storage(study)
    name = os.path.basename(path)
    if frozen.state.is_finished():
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=path, study_or_trial=study
        )
        study.set_user_attr(f"{ATTR_PREFIX}trial-{frozen.number}:{name}", artifact_id)
    else:
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=path, study_or_trial=frozen, storage=storage
        )
        storage.set_trial_user_attr(trial_id(frozen), ATTR_PREFIX + name, artifact_id)
    return artifact_id


def store_files(
    study: Any, paths: list[Path], artifact_store: Any, trial: Any = None
) -> dict[str, str]:
    """Store each file as an artifact of ``trial`` (see :func:`attach_file`) or, without
    one, of the study under user attr ``"artifact:<file name>"``; file name -> artifact id.

    Storing a file again (a report made anew) points the user attr at the new artifact;
    the old one stays listed in optuna-dashboard, as Optuna cannot unlist it.
    """
    import optuna

    stored: dict[str, str] = {}
    for path in paths:
        if trial is not None:
            stored[path.name] = attach_file(study, trial, path, artifact_store)
            continue
        stored[path.name] = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=str(path), study_or_trial=study
        )
        study.set_user_attr(ATTR_PREFIX + path.name, stored[path.name])
    return stored


def _frozen(study: Any, trial: Any) -> Any:
    """The FrozenTrial for a trial id, FrozenTrial or running Trial of ``study``."""
    import optuna

    if isinstance(trial, optuna.trial.FrozenTrial | optuna.Trial):
        wanted = trial_id(trial)
    elif isinstance(trial, int) and not isinstance(trial, bool):
        wanted = trial
    else:
        raise TypeError(
            f"trial must be a trial id, FrozenTrial or Trial, not {type(trial).__name__}"
        )
    storage = study_storage(study)
    frozen = storage.get_trial(wanted)
    try:
        owner = storage.get_trial_id_from_study_id_trial_number(study_id(study), frozen.number)
    except KeyError:
        owner = None
    if owner != wanted:
        raise ValueError(f"trial id {wanted} is not a trial of study {study.study_name!r}")
    return frozen
