"""`FrameCache`: decoded clips kept in memory, least recently used evicted first, under a byte cap."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class FrameCache:
    """A byte-capped LRU map from a key (a clip's path) to its decoded frames (N, H, W, 3) uint8.

    Each process has its own: a DataLoader worker gets a copy of the dataset, so the memory used
    is up to `max_bytes` per worker.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            frames = self._entries.get(key)
            if frames is not None:
                self._entries.move_to_end(key)
            return frames

    def put(self, key: str, frames: np.ndarray) -> bool:
        """Keep `frames` (evicting older clips as needed); False when they alone exceed the cap."""
        size = frames.nbytes
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            while self._entries and self.bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.nbytes
            self._entries[key] = frames
            self.bytes += size
        return True

    def __getstate__(self):
        # A copy sent to a DataLoader worker starts empty (no decoded frames pickled across).
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])
