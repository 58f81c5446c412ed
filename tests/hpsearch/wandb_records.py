"""Read offline wandb runs back from disk, for tests.

wandb 0.31 writes an offline run only to its transaction log ``run-<id>.wandb`` (no
``config.yaml`` or ``wandb-summary.json``), and ships no public reader for it. The log
is the LevelDB log format (32 KiB blocks of chunks with a 7-byte header: CRC-32,
length, chunk type) after a 7-byte file header, and each record is a
``wandb_internal.Record`` protobuf from wandb's own ``wandb.proto`` package. This
reads only what the tests check: the run record, history rows, summary and exit code.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FILE_HEADER = struct.Struct("<4sHB")  # ident ":W&B", magic 0xBEE1, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What a test wants to know of one offline run."""

    run_id: str
    name: str
    group: str
    job_type: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    @property
    def metric_keys(self) -> set[str]:
        """Keys logged in any history row, wandb's own ``_step`` etc. left out."""
        return {k for row in self.history for k in row if not k.startswith("_")}


def _chunks(data: bytes) -> Iterator[bytes]:
    ident, magic, _version = _FILE_HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"not a wandb transaction log (header {ident!r}, {magic:#x})")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero padding to the end of the block
            pos += left_in_block
            continue
        start = pos + _CHUNK_HEADER.size
        payload = data[start : start + length]
        pos = start + length
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield pending + payload
            pending = b""


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Parse the ``run-*.wandb`` log of one ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log_file,) = run_dir.glob("run-*.wandb")
    run: OfflineRun | None = None
    for raw in _chunks(log_file.read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run" and run is None:
            r = record.run
            run = OfflineRun(
                run_id=r.run_id,
                name=r.display_name,
                group=r.run_group,
                job_type=r.job_type,
                tags=list(r.tags),
                config={_key(i): json.loads(i.value_json) for i in r.config.update},
            )
        elif kind == "run":  # a later update of the run (tags changed after init)
            run.tags = list(record.run.tags) or run.tags
        elif run is None:
            continue
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    if run is None:
        raise ValueError(f"{log_file} has no run record")
    return run


def read_offline_runs(wandb_root: Path) -> list[OfflineRun]:
    """All offline runs under ``wandb_root`` (the ``dir`` given to ``wandb.init``)."""
    return [read_offline_run(d) for d in sorted((wandb_root / "wandb").glob("offline-run-*"))]


def wait_for_runs(wandb_root: Path, count: int, timeout_s: float = 30.0) -> list[OfflineRun]:
    """The offline runs once ``count`` of them are written through their exit record.

    ``run.finish()`` in offline mode returns before wandb's service process has written
    the log; ``wandb.teardown()`` waits for it, and this polls in case it did not.
    """
    import wandb

    wandb.teardown()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            runs = read_offline_runs(wandb_root)
        except ValueError:  # a log whose first records are not written yet
            runs = []
        if len(runs) >= count and all(r.exit_code is not None for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(runs)} finished wandb runs in {wandb_root}, want {count}")
        time.sleep(0.1)
