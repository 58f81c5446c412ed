"""Weights & Biases tracking: one run per trial, grouped by study, offline unless asked.

wandb is optional at run time: it is imported only when tracking is on, and a wandb
problem (no service, no network, a full disk) never fails a trial. The first error
warns once and switches tracking off for the rest of the process.

optuna-integration's ``WeightsAndBiasesCallback`` is not used: it is a
``study.optimize`` callback that logs once per finished trial through the global
``wandb.run`` (per-epoch metrics would need its ``track_in_wandb`` decorator around an
objective, and it is documented for ``n_jobs=1`` only). hpsearch workers claim trials
themselves instead of calling ``optimize``, need a run open from the first epoch to the
end of each trial, and must survive wandb errors; the callback raises them into the
objective. The wandb calls below are the plain SDK: ``init`` / ``log`` / ``finish``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shlex
import sys
import warnings
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, cast

from hpsearch.storage import redact

log = logging.getLogger(__name__)

MODES = ("off", "offline", "online")
#: The modes that start a run, as ``wandb.init`` types them ('off' starts none).
_INIT_MODES: dict[str, Literal["offline", "online"]] = {"offline": "offline", "online": "online"}
DEFAULT_PROJECT = "hpsearch"
#: Seconds ``wandb.init`` may take before the trial gives up on tracking.
INIT_TIMEOUT_S = 60


class TrackingWarning(UserWarning):
    """wandb failed; training goes on without tracking."""


def resolve_wandb_mode(flag: str | None) -> str:
    """``'off'``, ``'offline'`` or ``'online'``.

    ``--wandb`` wins; else ``$WANDB_MODE`` when it names a mode (``disabled`` means
    off); else online when ``$WANDB_API_KEY`` is set; else offline, which needs no
    account and can be uploaded later with ``wandb sync``.
    """
    if flag is not None:
        if flag not in MODES:
            raise ValueError(f"wandb mode {flag!r} is not one of {', '.join(MODES)}")
        return flag
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode in ("disabled", "off"):
        return "off"
    if env_mode in ("offline", "online"):
        return env_mode
    if os.environ.get("WANDB_API_KEY", "").strip():
        return "online"
    return "offline"


class TrialTracker:
    """One wandb run per trial for a worker process; no method ever raises.

    Call :meth:`start` when a trial begins, :meth:`log_epoch` after each epoch and
    :meth:`finish` when it ends. The same tracker serves all trials of a worker.
    With ``mode='off'`` every call returns at once and wandb is never imported.
    """

    def __init__(
        self,
        mode: str,
        study_name: str,
        sampler: str,
        pruner: str,
        workdir_wandb_dir: str | os.PathLike[str],
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"wandb mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.wandb_dir = Path(workdir_wandb_dir)
        self._enabled = mode != "off"
        self._run: Any = None
        self._trial_number: int | None = None

    @property
    def enabled(self) -> bool:
        """False when off, or after the first wandb error."""
        return self._enabled

    @property
    def run(self) -> Any:
        """The open wandb run, if a trial is being tracked."""
        return self._run

    def start(
        self,
        trial_number: int,
        config: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        resume_id: str | None = None,
    ) -> str | None:
        """Open the trial's run: ``config`` (the full training config) updated with ``params``.
        With ``resume_id`` (a promoted trial going on) that run is opened again instead.

        Returns the run's id (to record on the Optuna trial), or None when not tracking.
        """
        if not self._enabled:
            return None
        if self._run is not None:  # a previous trial was not finished: close it first
            self.finish("failed", {})
        try:
            full_config = {**_clean(dict(config)), **_clean(dict(params))}
            full_config["optuna"] = {
                "study": self.study_name,
                "trial_number": trial_number,
                "sampler": self.sampler,
                "pruner": self.pruner,
                "searched": sorted(params),
            }
            self._run = _init_run(
                self.mode,
                self.wandb_dir,
                name=f"{self.study_name}-trial-{trial_number}",
                group=self.study_name,
                job_type=self.sampler,
                tags=[f"sampler:{self.sampler}", f"pruner:{self.pruner}"],
                config=full_config,
                silent=True,  # a line per trial would bury the progress display
                **({"id": resume_id, "resume": "allow"} if resume_id else {}),
            )
            self._run.define_metric("epoch")
            self._run.define_metric("*", step_metric="epoch")
            self._trial_number = trial_number
            run_id = getattr(self._run, "id", None)
            return None if run_id is None else str(run_id)
        except Exception as err:
            self._disable("start a run", err)
            return None

    def log_epoch(self, row: Mapping[str, Any], epoch: int) -> None:
        """Log one epoch's numeric metrics (losses, accuracy, AUC, lr, images/s)."""
        if not self._enabled or self._run is None:
            return
        try:
            self._run.log({**_numeric(row), "epoch": int(epoch)})
        except Exception as err:
            self._disable("log an epoch", err)

    def finish(self, state: str, summary: Mapping[str, Any]) -> None:
        """Close the run with the trial's final ``state`` and ``summary`` values.

        ``state`` is ``'complete'``, ``'pruned'`` or ``'failed'``; a failed run exits
        non-zero so wandb shows it as failed.
        """
        if not self._enabled or self._run is None:
            return
        run, self._run = self._run, None
        try:
            run.summary.update(
                {
                    **_clean(dict(summary)),
                    "optuna/trial_number": self._trial_number,
                    "optuna/state": state,
                }
            )
            run.tags = (*run.tags, f"state:{state}")
            run.finish(exit_code=0 if state in ("complete", "pruned") else 1)
        except Exception as err:
            self._disable("finish a run", err, run)

    def _disable(self, what: str, err: Exception, run: Any = None) -> None:
        self._enabled = False
        warnings.warn(
            f"wandb tracking is off for the rest of this process: could not {what} "
            f"({type(err).__name__}: {err}); training goes on",
            TrackingWarning,
            stacklevel=3,
        )
        log.debug("wandb error", exc_info=err)
        _finish_quietly(run if run is not None else self._run)
        self._run = None


def log_study_table(study: Any, mode: str, wandb_dir: str | os.PathLike[str]) -> bool:
    """Log one run with a wandb Table of all trials of ``study``; True if it was logged.

    Never raises: a wandb error warns and returns False.
    """
    if mode == "off":
        return False
    try:
        import wandb

        from hpsearch.study.record import StudyRecord

        record = StudyRecord.read(study)
        attrs = record.to_dict() if record else {}
        columns, rows = trials_table(study)
        run = _init_run(
            mode,
            Path(wandb_dir),
            name=f"{study.study_name}-trials",
            group=study.study_name,
            job_type="study",
            tags=[f"sampler:{attrs.get('sampler', '?')}", f"pruner:{attrs.get('pruner', '?')}"],
            config={"study": study.study_name, "hpsearch": _clean(attrs)},
            silent=True,  # runs_line says where all the runs are, in one line
        )
        try:
            # wandb annotates columns as list[str | int]; a list is invariant, so a
            # list[str] does not match, though wandb reads it the same.
            header = cast("list[str | int]", columns)
            run.log({"trials": wandb.Table(columns=header, data=rows)})
            run.summary.update(_study_summary(study))
        finally:
            run.finish()
        return True
    except Exception as err:
        warnings.warn(
            f"wandb: could not log the trials table ({type(err).__name__}: {err})",
            TrackingWarning,
            stacklevel=2,
        )
        log.debug("wandb error", exc_info=err)
        return False


def report_wandb_runs(study: Any, mode: str, wandb_dir: str | os.PathLike[str]) -> None:
    """End of a run: log the study's trials table, then print :func:`runs_line`."""
    if mode == "off":
        return
    table = log_study_table(study, mode, wandb_dir)
    ids = {
        str(t.user_attrs["wandb_run_id"]) for t in study.trials if "wandb_run_id" in t.user_attrs
    }
    print(runs_line(mode, Path(wandb_dir), study.study_name, ids, table=table))


def shut_down() -> None:
    """Close this process's connection to wandb's service now, if it has one, and say in
    one line if that fails. wandb would otherwise do it at exit, where a service that a
    scheduler's stop (which signals every process of the job) has already ended gives a
    traceback after the run's last line."""
    if "wandb" not in sys.modules:
        return
    import wandb

    try:
        wandb.teardown()
    except BaseException as err:  # a service gone, a second stop: the runs are on disk
        warnings.warn(
            f"wandb: its service ended before this process ({type(err).__name__}); the "
            "runs written so far are on disk",
            TrackingWarning,
            stacklevel=2,
        )


def runs_line(
    mode: str,
    wandb_dir: Path,
    study_name: str,
    run_ids: Collection[str] = (),
    *,
    table: bool = False,
) -> str:
    """One line: where the study's wandb runs are and the one command that uploads them.

    Offline runs are folders ``offline-run-<time>-<id>`` under ``wandb_dir/wandb``;
    ``wandb sync`` given them all uploads every one (runs already uploaded are skipped).
    With the study's trial run ids, the line counts those apart from the folder's other
    runs (other studies', earlier commands' tables), which the same command uploads too.
    """
    project = os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    where = f"project {project!r}, group {study_name!r}"
    if mode == "online":
        return f"wandb: this study's runs are online ({where}): one per trial and a summary"
    runs_dir = wandb_dir / "wandb"
    folders = [p.name for p in runs_dir.glob("offline-run-*")]
    shown = shlex.quote(_relative(runs_dir))
    upload = f"upload them all: wandb sync {shown}/offline-run-*"
    if not run_ids:
        return f"wandb: {len(folders)} offline run(s) in {shown}/ ({where}); {upload}"
    ids = [_folder_run_id(name) for name in folders]
    mine = [run_id for run_id in ids if run_id in run_ids]
    others = len(folders) - len(mine) - int(table)
    what = f"{len(set(mine))} trial run(s){' and its trials table' if table else ''}"
    if len(mine) > len(set(mine)):
        # A promoted trial (the promotion pruner) goes on in its own run: offline, each of
        # its runs is a folder of that run's id. wandb sync does not join such folders
        # (wandb/wandb#3841): each one uploaded replaces the run's earlier history.
        what += f" in {len(mine)} folders (promoted trials went on in their own run)"
    also = f"; {others} other run(s) there too" if others > 0 else ""
    return f"wandb: this study's {what} offline in {shown}/ ({where}){also}; {upload}"


def _folder_run_id(name: str) -> str:
    """The run id of an offline run's folder: ``offline-run-<date>_<time>-<id>``, where
    wandb adds ``-N`` when a folder of that name exists already."""
    found = re.fullmatch(r"offline-run-\d{8}_\d{6}-([^-]+)(?:-\d+)?", name)
    return found[1] if found else name.rsplit("-", 1)[-1]


def _relative(path: Path) -> str:
    """``path`` relative to the current folder when under it (shorter to type)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def trials_table(study: Any) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the wandb trials table: the shared trial rows, numeric attrs too."""
    from hpsearch.trials import trial_rows

    table = trial_rows(study, user_attrs=True)
    columns = [c for c in table.columns if c != "interrupted"]
    rows = [
        [row["state"].lower() if c == "state" else _cell(row[c]) for c in columns]
        for row in table.rows
    ]
    return columns, rows


def _study_summary(study: Any) -> dict[str, Any]:
    from optuna.trial import TrialState

    from hpsearch.trials import best_search_trial, is_feasible, search_trials
    from hpsearch.trials.cost import study_cost

    trials = search_trials(study)
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1
    summary: dict[str, Any] = {f"n_{k}": v for k, v in counts.items() if v}
    summary["n_trials"] = len(trials)
    best = best_search_trial(study)
    if best is not None:
        summary.update(
            {"best/number": best.number, "best/value": best.value, **_clean(best.params)}
        )
    cost = study_cost(trials)
    summary.update(
        {
            "cost/device_seconds": cost.device_seconds,
            "cost/unit": cost.unit_label,
            "cost/epochs": cost.epochs,
            "cost/pruning_saved_epochs": cost.epochs_saved,
            "cost/pruning_saved_device_seconds": cost.device_seconds_saved,
        }
    )
    summary["n_feasible"] = sum(is_feasible(t) for t in trials if t.state == TrialState.COMPLETE)
    return summary


def _init_run(mode: str, wandb_dir: Path, *, silent: bool, **kwargs: Any) -> Any:
    """``wandb.init`` for one short-lived run; runs go under ``wandb_dir/wandb/``."""
    import wandb

    wandb_dir.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(
        console="off",  # the worker's own output stays in the terminal, not in the run
        disable_git=True,
        disable_code=True,
        silent=silent,
        init_timeout=INIT_TIMEOUT_S,
    )
    with _argv_without_passwords():
        return wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            dir=str(wandb_dir),
            mode=_INIT_MODES[mode],
            # a worker may hold another run (or a caller's) open; never finish someone else's
            reinit="create_new",
            settings=settings,
            **kwargs,
        )


@contextlib.contextmanager
def _argv_without_passwords() -> Iterator[None]:
    """wandb records the command line with each run: hide every secret a storage URL (or a
    connection string) in it carries."""
    saved = sys.argv
    sys.argv = [redact(arg) for arg in saved]
    try:
        yield
    finally:
        sys.argv = saved


def _finish_quietly(run: Any) -> None:
    if run is None:
        return
    try:
        run.finish(exit_code=1)
    except Exception:
        log.debug("wandb finish after an error failed too", exc_info=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(row: Mapping[str, Any]) -> dict[str, float | int]:
    """The scalar numbers of an epoch row (numpy/torch scalars included)."""
    out: dict[str, float | int] = {}
    for key, value in row.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if _is_number(value):
            out[str(key)] = value
    return out


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def _clean(value: Any) -> Any:
    """JSON-friendly copy for wandb config/summary, with the secrets of URLs masked."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return str(value)
