"""The exact-text embedding cache of `rgd serve`: routed text -> its embedding, least recently used
first out, bounded by entries and by bytes (Limits.embed_cache_entries, Limits.embed_cache_bytes).

A text is kept by its SHA-256 (32 bytes, whatever the text's length) and its vector as float32, a
read-only copy of its own (never a view that would keep a whole batch alive). No entry is ever
invalidated: a server loads one router and its one embedder for the life of its process, so a text
has one vector for as long as the cache exists. The event loop reads and the embedding thread
writes, so every operation holds one lock (each is a few dictionary steps).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

# bytes charged per entry besides its vector: the 32-byte key as a Python bytes object (65), the
# array's header (112) and the ordered dictionary's slot and link: about 256 in all (CPython 3.12)
ENTRY_OVERHEAD = 256


def text_key(text: str) -> bytes:
    """The cache key of a routed text (lone surrogates pass: the key never goes to a tokenizer)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbedCache:
    """An LRU of float32 vectors by text key; `max_entries` or `max_bytes` 0 disables it."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """What the entries held are charged: their vectors plus ENTRY_OVERHEAD each."""
        return self._bytes

    def get(self, key: bytes) -> np.ndarray | None:
        """The vector kept under `key` (now the most recently used), or None."""
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: bytes, vector: np.ndarray) -> None:
        """Keep a copy of `vector` under `key`, then drop the least recently used entries until
        both bounds hold. A vector larger than the byte bound on its own is not kept."""
        if not self.enabled:
            return
        v = np.array(np.ravel(vector), dtype=np.float32, copy=True)  # owns its data
        v.setflags(write=False)
        cost = v.nbytes + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes + ENTRY_OVERHEAD
            self._items[key] = v
            self._bytes += cost
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes + ENTRY_OVERHEAD

    def describe(self) -> str:
        """For the start-up line: 'N entries / B bytes at most', or 'off'."""
        if not self.enabled:
            return "off"
        return f"at most {self.max_entries} entries / {self.max_bytes / (1 << 20):g} MiB"
