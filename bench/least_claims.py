"""The least cross-process de-duplication: the collector benchmark's ceiling with de-duplication.

Any collector whose worker processes all take batches must, for each event id, find out whether
another process stored it and say that it now does, in some structure every process sees. The
least such work, in Python: each worker hashes a batch's ids (Python's `hash`, the same in every
worker under one PYTHONHASHSEED) and, under an exclusive `flock`, looks them up in an open-addressing
table of 64-bit hashes in shared memory (`/dev/shm`) and claims the new ones, with numpy's vector
operations rather than a loop per id. Nothing is journaled and nothing survives a restart; a hash
collision counts as a duplicate: it is a floor for what durable de-duplication costs, not a design.
`bench/baseline_collector.py --least --claims` maps with `least_mapping.py`, claims with this, and
stores the lines of the ids it claimed.
"""

from __future__ import annotations

import fcntl
import mmap
import os

import numpy as np

SLOTS = 1 << 25  # 256 MiB of 8-byte slots: a quarter full after the benchmark's ~8M ids


class Claims:
    def __init__(self, path: str, slots: int = SLOTS):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size < slots * 8:
            os.ftruncate(self.fd, slots * 8)  # zeros: every slot empty (both workers may do it: same size)
        # mapped with its pages in place: a long-running collector's table is, a new one faults on each first touch
        mapping = mmap.mmap(self.fd, slots * 8, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        self.table = np.frombuffer(mapping, dtype=np.int64)
        self.mask = slots - 1  # a power of two

    def claim(self, ids: list[str]) -> np.ndarray:
        """Which of these ids (distinct) no process claimed before, now claimed by this one."""
        hashes = np.fromiter(map(hash, ids), np.int64, len(ids))
        hashes[hashes == 0] = 1  # 0 marks an empty slot
        table, mask = self.table, self.mask
        new = np.zeros(len(ids), bool)
        pending = np.arange(len(ids))
        slots = hashes & mask
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            while pending.size:
                at = slots[pending]
                held = table[at]
                found = held == hashes[pending]
                empty = np.flatnonzero(held == 0)
                # ids of the batch that probe the same empty slot: the first takes it, the others probe on
                taken, first = np.unique(at[empty], return_index=True)
                winners = pending[empty[first]]
                table[taken] = hashes[winners]
                new[winners] = True
                found[empty[first]] = True
                pending = pending[~found]
                slots[pending] = (slots[pending] + 1) & mask
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return new
