"""The working directory (per machine) and the artifact location (shared by every machine).

The workdir holds what each machine keeps for itself: the decoded image cache, the demo
data, wandb's files. Checkpoints of running trials and the artifact store go to the
artifact location: the workdir itself by default, or ``--artifacts`` /
``$HPSEARCH_ARTIFACTS``, a folder every machine of a search mounts, so a trial taken over
by another machine resumes from its last epoch and any machine can export the best one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError

DEFAULT_WORKDIR = "hpsearch-work"
WORKDIR_ENV = "HPSEARCH_WORKDIR"
ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str, what: str = "study name") -> str:
    """``name`` if it is a plain file name (letters, digits, . _ -), else a UserError.

    Study names become folder names under the workdir; this keeps ``../x`` out.
    """
    if not _SAFE_NAME.match(name):
        raise UserError(
            f"invalid {what} {name!r}: it must start with a letter or a digit, then letters, "
            "digits, '.', '_' or '-', 128 characters at most"
        )
    return name


@dataclass(frozen=True)
class ArtifactLocation:
    """A folder for checkpoints and artifacts that every machine of a search mounts.

    Its layout is the workdir's (``studies/<study>/slot-NNNNN/``, ``artifacts/``), so a
    former workdir can be named as the artifact location and nothing moves.
    """

    root: Path

    @classmethod
    def resolve(cls, flag: str | os.PathLike[str] | None) -> ArtifactLocation | None:
        """``--artifacts``, else ``$HPSEARCH_ARTIFACTS``, else None (the workdir)."""
        text = os.fspath(flag) if flag else os.environ.get(ARTIFACTS_ENV)
        if not text:
            return None
        if "://" in text:
            raise UserError(
                f"artifact location {text!r}: only a folder is supported (mount the shared "
                "storage on every machine and give its path)"
            )
        return cls(Path(text).expanduser().absolute())

    @property
    def store(self) -> Path:
        """Optuna's filesystem artifact store."""
        return self.root / "artifacts"

    def make(self) -> ArtifactLocation:
        """Create the folder; one that cannot be created or written to is a UserError."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create artifact folder {self.root}: {err.strerror}") from None
        check_writable(self.root)
        return self


@dataclass(frozen=True)
class Workdir:
    """Layout of the working directory (``--workdir``, default ``./hpsearch-work``)."""

    root: Path
    shared: Path | None = None
    """The artifact location's folder (``--artifacts``); None keeps everything in ``root``."""

    @classmethod
    def resolve(
        cls, flag: str | os.PathLike[str] | None, artifacts: str | os.PathLike[str] | None = None
    ) -> Workdir:
        """``--workdir`` (else ``$HPSEARCH_WORKDIR``, else ``./hpsearch-work``) with the
        artifact location of ``--artifacts`` (else ``$HPSEARCH_ARTIFACTS``) if there is one."""
        root = Path(flag or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR).absolute()
        location = ArtifactLocation.resolve(artifacts)
        return cls(root, location.root if location else None)

    @property
    def cache(self) -> Path:
        """Decoded uint8 image caches, shared by every trial and process."""
        return self.root / "cache"

    @property
    def artifact_root(self) -> Path:
        """Where checkpoints and artifacts go: the shared location, else the workdir."""
        return self.shared or self.root

    @property
    def artifacts(self) -> Path:
        """Optuna's filesystem artifact store."""
        return ArtifactLocation(self.artifact_root).store

    @property
    def precision_probe(self) -> Path:
        """This machine's measured speeds of fp32 and bf16 (``precision = "auto"``)."""
        return self.root / "precision-probe.json"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    def trial_dir(self, study: str, slot: int, uid: str = "") -> Path:
        """Checkpoints of one search point; a retried trial resumes from here. ``uid``:
        the study's own id (its record's), so that only this study's trials resume them."""
        folder = self.artifact_root / "studies" / safe_name(study)
        return (folder / safe_name(uid) if uid else folder) / f"slot-{slot:05d}"

    def make(self) -> Workdir:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create workdir {self.root}: {err.strerror}") from None
        if self.shared is not None:
            ArtifactLocation(self.shared).make()
        return self


def check_creatable(folder: Path) -> None:
    """``folder`` exists and takes a file, or can be made: its nearest existing parent is
    a folder that takes one. Checks without creating anything."""
    for parent in [folder, *folder.parents]:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise UserError(f"cannot create {folder}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"cannot write to {parent} (to make {folder})")
            return


@contextlib.contextmanager
def removed_if_refused(*folders: Path) -> Iterator[None]:
    """Within the block, folders among ``folders`` (and their parents) that the block
    creates are removed again, if still empty, when it ends in a ``UserError``: a refused
    command leaves no folder behind."""
    missing = {p for folder in folders for p in [folder, *folder.parents] if not p.exists()}
    try:
        yield
    except UserError:
        for path in sorted(missing, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise


def check_writable(folder: os.PathLike[str] | str) -> None:
    """``folder`` takes a file (checkpoints, caches and exports are written there)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hpsearch-write-check-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write to {folder}: {err.strerror or err}") from None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block: what several
    commands build in a shared folder is built by one of them while the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
