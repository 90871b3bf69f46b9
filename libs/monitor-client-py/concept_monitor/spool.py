"""A bounded folder of checkpoints waiting for the service (policy "spool").

Each checkpoint is one file `<seq>-<step>.ckpt` holding its serialized TrainerMessages, each as a
4-byte little-endian length and the bytes. Files are written to a temporary name and renamed, so a
reader never sees half a checkpoint; they are read back oldest first (by sequence number), which
keeps the steps in order. Besides checkpoints (step >= 0) it holds the run's RunEnd (step -1) and
the random initialisations of the learned-concept baseline (step -2 - index), written before the
first checkpoint, so they go out first.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections import deque
from typing import Deque, List, Optional, Tuple

from .errors import CmError

_LEN = struct.Struct("<I")


class Spool:
    def __init__(self, directory: Optional[str], max_bytes: int) -> None:
        if max_bytes <= 0:
            raise CmError("INVALID_ARGUMENT", f"spool_max_bytes must be > 0, got {max_bytes}")
        self.owned = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="cm-spool-")
        os.makedirs(self.dir, exist_ok=True)
        leftovers = [f for f in os.listdir(self.dir) if f.endswith(".ckpt")]
        if leftovers:
            raise CmError(
                "INVALID_ARGUMENT",
                f"spool folder {self.dir} already holds {len(leftovers)} checkpoint file(s) of another run",
                {"spool": self.dir},
                "give each run its own spool folder, or empty it",
            )
        self.max_bytes = max_bytes
        self.bytes = 0
        self._seq = 0
        self._files: Deque[Tuple[str, int, int]] = deque()  # (path, step, bytes)

    def __len__(self) -> int:
        return len(self._files)

    def fits(self, nbytes: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes

    def put(self, step: int, messages: List[bytes]) -> None:
        self._seq += 1
        path = os.path.join(self.dir, f"{self._seq:012d}-{step}.ckpt")
        tmp = path + ".tmp"
        size = 0
        with open(tmp, "wb") as f:
            for m in messages:
                f.write(_LEN.pack(len(m)))
                f.write(m)
                size += _LEN.size + len(m)
        os.replace(tmp, path)
        self._files.append((path, step, size))
        self.bytes += size

    def checkpoints(self) -> int:
        """Spooled checkpoints (not counting a spooled RunEnd, step -1)."""
        return sum(1 for _, step, _ in self._files if step >= 0)

    def peek_bytes(self) -> int:
        return self._files[0][2] if self._files else 0

    def pop(self) -> Tuple[int, List[bytes]]:
        """The oldest checkpoint (step, messages); its file is removed."""
        path, step, size = self._files.popleft()
        with open(path, "rb") as f:
            data = f.read()
        messages: List[bytes] = []
        pos = 0
        while pos < len(data):
            (n,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            messages.append(data[pos : pos + n])
            pos += n
        os.remove(path)
        self.bytes -= size
        return step, messages

    def close(self) -> int:
        """Remove what is left; return how many checkpoints were still spooled."""
        left = len(self._files)
        for path, _, _ in self._files:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        self._files.clear()
        self.bytes = 0
        if self.owned:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass
        return left
