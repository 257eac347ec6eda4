"""The key/value cache of a running batch, and the store of shared prompt prefixes.

The batch cache is one transformers DynamicCache of shape [rows, heads, columns, dim]
per layer plus a [rows, columns] mask: rows join and leave between decode steps, so
their histories have different lengths. A row that is shorter than the batch is
padded with masked columns; columns that no row uses any more are dropped when rows
leave. Masked columns contribute nothing to attention, so a row's tokens do not
depend on its neighbours (tests check greedy outputs against single-request runs).

The prefix store keeps the keys/values of prompt prefixes that many requests share
(the bot's system prompt): a request that starts with one only computes its own tail.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from transformers import DynamicCache

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [rows, heads, columns, dim]


def kv_of(cache: DynamicCache) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_of(kv: KV) -> DynamicCache:
    return DynamicCache(ddp_cache_data=kv)


def _pad_left(kv: KV, mask: torch.Tensor, columns: int) -> tuple[KV, torch.Tensor]:
    missing = columns - mask.shape[1]
    if missing <= 0:
        return kv, mask
    padded = []
    for k, v in kv:
        zeros = k.new_zeros(k.shape[0], k.shape[1], missing, k.shape[3])
        padded.append((torch.cat([zeros, k], dim=2), torch.cat([zeros, v], dim=2)))
    return padded, torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)


class BatchCache:
    """The running batch's cache: a DynamicCache the model appends to, plus its mask."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor):
        self.cache = cache
        self.mask = mask  # [rows, columns] int64, 1 where a column holds a real token of that row

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def step_mask(self) -> torch.Tensor:
        """Extend the mask by the column the next decode step appends, and return it."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        return self.mask

    def extend(self, other: "BatchCache") -> None:
        """Append other's rows (aligning both to the longer history with masked columns)."""
        columns = max(self.mask.shape[1], other.mask.shape[1])
        mine, self.mask = _pad_left(kv_of(self.cache), self.mask, columns)
        theirs, other_mask = _pad_left(kv_of(other.cache), other.mask, columns)
        self.mask = torch.cat([self.mask, other_mask], dim=0)
        for layer, (k, v), (k2, v2) in zip(self.cache.layers, mine, theirs):
            layer.keys = torch.cat([k, k2], dim=0)
            layer.values = torch.cat([v, v2], dim=0)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, then drop the columns that no remaining row uses."""
        index = torch.tensor(rows, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0)
        columns = None if bool(used.all()) else used.nonzero().squeeze(1)
        self.mask = mask if columns is None else mask.index_select(1, columns)
        for layer in self.cache.layers:
            k, v = layer.keys.index_select(0, index), layer.values.index_select(0, index)
            if columns is not None:
                k, v = k.index_select(2, columns), v.index_select(2, columns)
            layer.keys, layer.values = k, v

    def row_kv(self, row: int, start: int, stop: int) -> KV:
        """A copy of one row's keys/values for columns [start, stop)."""
        return [(layer.keys[row : row + 1, :, start:stop].clone(), layer.values[row : row + 1, :, start:stop].clone())
                for layer in self.cache.layers]


class PrefixStore:
    """Keys/values of shared prompt prefixes, least recently used dropped first."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prefix: tuple[int, ...], uses: int = 1) -> KV | None:
        """The stored keys/values of prefix, if present; counts uses requests as hits."""
        with self._lock:
            kv = self._entries.get(prefix)
            if kv is not None:
                self._entries.move_to_end(prefix)
                self.hits += uses
            return kv

    def missed(self, uses: int = 1) -> None:
        self.misses += uses

    def __contains__(self, prefix: tuple[int, ...]) -> bool:
        return prefix in self._entries

    def put(self, prefix: tuple[int, ...], kv: KV) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[prefix] = kv
            self._entries.move_to_end(prefix)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
