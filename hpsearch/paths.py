"""The one working-directory root: caches, demo data, checkpoints, artifacts, wandb, exports."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError

DEFAULT_WORKDIR = "hpsearch-work"
WORKDIR_ENV = "HPSEARCH_WORKDIR"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str, what: str = "study name") -> str:
    """``name`` if it is a plain file name (letters, digits, . _ -), else a UserError.

    Study names become folder names under the workdir; this keeps ``../x`` out.
    """
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise UserError(f"invalid {what} {name!r}: use letters, digits, '.', '_' and '-' (max 128)")
    return name


@dataclass(frozen=True)
class Workdir:
    """Layout of the working directory (``--workdir``, default ``./hpsearch-work``)."""

    root: Path

    @classmethod
    def resolve(cls, flag: str | os.PathLike[str] | None) -> Workdir:
        return cls(Path(flag or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR).absolute())

    @property
    def cache(self) -> Path:
        """Decoded uint8 image caches, shared by every trial and process."""
        return self.root / "cache"

    @property
    def demo_data(self) -> Path:
        """The synthetic demo dataset used when no ``--data`` is given."""
        return self.root / "demo-data"

    @property
    def artifacts(self) -> Path:
        """Optuna's filesystem artifact store."""
        return self.root / "artifacts"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    def trial_dir(self, study: str, slot: int) -> Path:
        """Checkpoints of one search point; a retried trial resumes from here."""
        return self.root / "studies" / safe_name(study) / f"slot-{slot:05d}"

    def make(self) -> Workdir:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create workdir {self.root}: {err.strerror}") from None
        return self
