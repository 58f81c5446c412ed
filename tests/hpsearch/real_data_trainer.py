"""The trainer's real data loading with the fast stand-in ``fit`` (``$STAND_IN_TRAINER``).

``load_data`` is the trainer's own (layout discovery, decoding, cache, split), so bad and
awkward image files meet the real code in ``hpsearch run``; ``fit`` is the fake one from
``fake_trainer``, so nothing is trained.
"""

from __future__ import annotations

from tests.hpsearch.fake_trainer import fit
from trainer.data import load_data

__all__ = ["fit", "load_data"]
