"""One split's images left in the cache file, read a batch at a time.

A CPU trial that holds its splits in memory keeps N * S * S bytes resident (860 MiB for
20,000 images at 224 px). Read from the cache file instead, the rows sit in the kernel's
page cache, which it may drop under pressure and which is not the process's memory. The
rows are read with ``pread``, not through a memory map: pages a process has mapped and
touched count in its resident memory until it unmaps them, so after one epoch a memory
map would hold as much as the split itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from trainer.errors import UserError


class CachedSplit:
    """Rows ``rows`` of a ``(count, S, S)`` uint8 cache file, as ``(N, 1, S, S)`` images.

    Indexing it (an index tensor or a slice) reads those images into a new uint8 tensor on
    the CPU, exactly what indexing the split held in memory would give; ``shape``,
    ``dtype``, ``device``, ``dim()`` and ``numel()`` answer as that tensor would.
    ``to(device)`` reads the whole split into a tensor there (a no-op on the CPU).
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, file: Path, rows: np.ndarray, size: int) -> None:
        self.file = Path(file)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.size = int(size)
        self.shape = torch.Size((len(self.rows), 1, self.size, self.size))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"CachedSplit({self.file.name}, {len(self)} images, {self.size} px)"

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return len(self.rows) * self.size * self.size

    def __getitem__(self, index: slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        """The images at ``index`` (positions in this split), read from the file."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return torch.from_numpy(self.read(self.rows[index]))

    def read(self, file_rows: np.ndarray) -> np.ndarray:
        """``(len(file_rows), 1, S, S)`` uint8: the given rows of the file, in that order."""
        row_bytes = self.size * self.size
        out = np.empty((len(file_rows), 1, self.size, self.size), dtype=np.uint8)
        fd = os.open(self.file, os.O_RDONLY)
        try:
            for i, row in enumerate(file_rows.tolist()):
                view = memoryview(out[i]).cast("B")
                if os.preadv(fd, [view], row * row_bytes) != row_bytes:
                    raise UserError(
                        f"image cache {self.file} is shorter than its index says; delete it"
                    )
        finally:
            os.close(fd)
        return out

    def to(
        self, device: torch.device | str, non_blocking: bool = False
    ) -> CachedSplit | torch.Tensor:
        """Itself on the CPU; elsewhere the whole split, read in blocks, as a tensor there."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        out = torch.empty(self.shape, dtype=torch.uint8, device=device)
        block = 1024
        for start in range(0, len(self), block):
            out[start : start + block].copy_(self[start : start + block], non_blocking=non_blocking)
        return out


Images = torch.Tensor | CachedSplit
"""uint8 ``(N, 1, H, W)`` images: held in a tensor, or left in the cache file."""
