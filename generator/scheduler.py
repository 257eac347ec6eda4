"""Continuous batching: one decode loop on one thread serves every open request.

Between two decode steps the loop drops requests that were cancelled or ran past
their deadline, retires finished rows, and admits waiting requests: their prompts are
prefilled together (reusing the stored keys/values of a shared system prompt) and
their rows join the batch. Each step then feeds the last token of every row through
the model once, so N conversations cost one weight read per token instead of N.

Why our own loop and not transformers' ContinuousBatchingManager: measured on these
2 CPU cores (bench/results/generator.md) the manager stopped scaling past about 100
tokens/s at 16 rows while a padded batch kept growing to 150 at 32, it sizes its
paged cache from a share of RAM, and it has no per-request sampling seed.

Token-level decisions (EOS, max_tokens, cancellation) are made here; text-level ones
(stop strings, streamed deltas, the final text) belong to the request's listener.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .engine import CancelToken, SamplingParams
from .errors import Cancelled, NotReady, Overloaded
from .kvcache import BatchCache, PrefixStore, cache_of

log = logging.getLogger("generator.scheduler")

# Rows per decode step; rendered as a Prometheus histogram by generator.metrics.
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
# Sampling draws from the 50 likeliest tokens, as transformers' generate() does by default
# (the service sampled through generate() before); a small model's long tail is noise.
SAMPLING_TOP_K = 50


class Listener:
    """What a request's owner hears; called on the scheduler thread, so keep it quick."""

    def started(self) -> None:
        """The request left the queue and is being prefilled."""

    def token(self, row: int, tokens: list[int]) -> bool:
        """A row got a new token (tokens so far); return True to end that row here."""
        return False

    def finished(self, rows: list[list[int]]) -> None:
        """Every row is done; the generated tokens of each row."""

    def failed(self, error: BaseException) -> None:
        """The request ended without a result (cancelled, timed out, or the model failed)."""


@dataclass(eq=False)
class Request:
    prompt: list[int]
    params: SamplingParams
    cancel: CancelToken
    listener: Listener
    rows: int = 1  # sequences to decode: n when sampling, 1 when greedy
    prefix_len: int = 0  # leading prompt tokens worth sharing through the prefix store
    generator: torch.Generator | None = None
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    row_states: list["_Row"] = field(default_factory=list)
    reported: bool = False


@dataclass(eq=False)
class _Row:
    request: Request
    index: int
    position: int  # real tokens in this row's cache: the position of the next fed token
    tokens: list[int] = field(default_factory=list)
    done: bool = False


@dataclass
class SchedulerStats:
    """Cumulative counters, read by the /metrics collector."""

    steps: int = 0
    batch_buckets: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))
    batch_rows_sum: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens actually computed (the rest came from the prefix store)
    generated_tokens: int = 0

    def observe_batch(self, rows: int) -> None:
        self.steps += 1
        self.batch_rows_sum += rows
        for i, bound in enumerate(BATCH_BUCKETS):
            if rows <= bound:
                self.batch_buckets[i] += 1
                return
        self.batch_buckets[-1] += 1


class Scheduler:
    def __init__(self, model, *, eos_ids: set[int], pad_id: int, max_batch: int, max_queue: int,
                 prefill_tokens: int, prefix_store: PrefixStore, threads: int, name: str = "chat"):
        self.model = model
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.prefill_tokens = prefill_tokens
        self.prefixes = prefix_store
        self.threads = threads
        self.stats = SchedulerStats()
        self._waiting: deque[Request] = deque()
        self._active: list[Request] = []
        self._rows: list[_Row] = []
        self._batch: BatchCache | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._avg_request_s = 5.0  # moving average, for Retry-After
        self._thread = threading.Thread(target=self._run, name=f"{name}-scheduler", daemon=True)
        self._thread.start()

    # -- the caller's side (any thread) ---------------------------------------

    @property
    def pending(self) -> int:
        """Requests decoding or waiting."""
        return len(self._active) + len(self._waiting)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def batch_rows(self) -> int:
        return len(self._rows)

    def retry_after_s(self) -> int:
        queued_rounds = (len(self._waiting) + 1) / max(1, self.max_batch)
        return max(1, math.ceil(self._avg_request_s * queued_rounds))

    def submit(self, request: Request) -> None:
        """Queue the request, or raise Overloaded when max_batch + max_queue are taken."""
        with self._cond:
            if self._closed:
                raise NotReady("the generator is shutting down", headers={"Retry-After": "5"})
            if self.pending >= self.max_batch + self.max_queue:
                raise Overloaded(
                    f"the chat queue is full ({self.max_batch} generating, {self.max_queue} waiting); retry later",
                    headers={"Retry-After": str(self.retry_after_s())},
                )
            self._waiting.append(request)
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the loop (scheduler thread) --------------------------------------------

    def _run(self) -> None:
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._waiting and not self._rows:
                        self._cond.wait()
                    if self._closed:
                        break
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self._rows:
                        self._decode()
                except Exception as exc:  # the model failed: nobody may wait forever
                    log.exception("generation step failed; failing the %d requests in the batch", len(self._active))
                    self._fail_batch(exc)
        error = NotReady("the generator is shutting down")
        with self._cond:
            for request in [*self._active, *self._waiting]:
                request.listener.failed(error)
            self._active, self._rows, self._batch = [], [], None
            self._waiting.clear()

    def _drop_cancelled(self) -> None:
        with self._cond:
            gone = [r for r in self._waiting if r.cancel.cancelled]
            for request in gone:
                self._waiting.remove(request)
        for request in gone:
            request.listener.failed(Cancelled())
        if any(r.cancel.cancelled for r in self._active):
            self._retire(lambda row: row.request.cancel.cancelled, Cancelled())

    def _fail_batch(self, error: BaseException) -> None:
        failed, self._active, self._rows, self._batch = self._active, [], [], None
        for request in failed:
            request.listener.failed(error)

    def _take_waiting(self) -> list[Request]:
        """FIFO, while rows fit the batch and prompts fit the prefill budget (one at least)."""
        taken, rows, tokens = [], len(self._rows), 0
        with self._cond:
            while self._waiting:
                request = self._waiting[0]
                cost = len(request.prompt) - (request.prefix_len if self._has_prefix(request) else 0)
                if taken and (rows + request.rows > self.max_batch or tokens + cost > self.prefill_tokens):
                    break
                if not taken and self._rows and rows + request.rows > self.max_batch:
                    break
                taken.append(self._waiting.popleft())
                rows += request.rows
                tokens += cost
        return taken

    def _has_prefix(self, request: Request) -> bool:
        return request.prefix_len > 0 and tuple(request.prompt[: request.prefix_len]) in self.prefixes

    def _admit(self) -> None:
        taken = self._take_waiting()
        if not taken:
            return
        self._active.extend(taken)  # from here on a failure fails them with the batch
        for request in taken:
            request.listener.started()
        groups: dict[tuple[int, ...] | None, list[Request]] = {}
        for request in taken:
            key = tuple(request.prompt[: request.prefix_len]) if self._has_prefix(request) else None
            groups.setdefault(key, []).append(request)
        for key, requests in groups.items():
            self._prefill(requests, key)

    def _prefill(self, requests: list[Request], prefix: tuple[int, ...] | None) -> None:
        """Compute the prompts (after a shared prefix, if stored) and sample each row's first token."""
        stored = self.prefixes.lookup(prefix, len(requests)) if prefix else None
        start = len(prefix) if stored is not None else 0
        tails = [r.prompt[start:] for r in requests]
        width = max(len(t) for t in tails)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, tail in enumerate(tails):
            ids[i, width - len(tail):] = torch.tensor(tail, dtype=torch.long)
            tail_mask[i, width - len(tail):] = 1
        positions = (start + tail_mask.cumsum(1) - 1).clamp(min=start)
        mask = torch.cat([tail_mask.new_ones(len(requests), start), tail_mask], dim=1)
        if stored is not None:
            cache = cache_of([(k.expand(len(requests), -1, -1, -1), v.expand(len(requests), -1, -1, -1))
                              for k, v in stored])
        else:
            cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=True, logits_to_keep=1)
        batch = BatchCache(cache, mask)  # the model appended the prompt's keys/values to cache
        self.stats.prompt_tokens += sum(len(r.prompt) for r in requests)
        self.stats.prefilled_tokens += sum(len(t) for t in tails)
        if stored is None:
            self.prefixes.missed(sum(1 for r in requests if r.prefix_len > 0))
            self._remember_prefixes(requests, batch, width)
        logits = out.logits[:, -1, :]
        keep, rows = [], []
        for i, request in enumerate(requests):
            for j in range(request.rows):
                row = _Row(request, j, position=len(request.prompt))
                request.row_states.append(row)
                self._accept(row, self._pick(logits[i : i + 1], [row])[0])
                if not row.done:
                    keep.append(i)
                    rows.append(row)
        self._finish_done(requests)
        if not rows:
            return
        batch.keep(keep)
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.extend(batch)
        self._rows.extend(rows)

    def _remember_prefixes(self, requests: list[Request], batch: BatchCache, width: int) -> None:
        for i, request in enumerate(requests):
            prefix = tuple(request.prompt[: request.prefix_len])
            if request.prefix_len <= 0 or prefix in self.prefixes:
                continue
            first = width - len(request.prompt)  # prompts are left-padded to the group's width
            self.prefixes.put(prefix, batch.row_kv(i, first, first + request.prefix_len))

    def _decode(self) -> None:
        rows = self._rows
        self.stats.observe_batch(len(rows))
        ids = torch.tensor([[row.tokens[-1]] for row in rows], dtype=torch.long)
        positions = torch.tensor([[row.position] for row in rows], dtype=torch.long)
        mask = self._batch.step_mask()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=self._batch.cache,
                         use_cache=True)
        for row, token in zip(rows, self._pick(out.logits[:, -1, :], rows)):
            row.position += 1
            self._accept(row, token)
        self._finish_done(self._active)
        if any(row.done for row in rows):
            self._retire(lambda row: row.done)

    def _accept(self, row: _Row, token: int) -> None:
        row.tokens.append(token)
        request = row.request
        if request.first_token_at is None:
            request.first_token_at = time.monotonic()
        self.stats.generated_tokens += 1
        stop = request.listener.token(row.index, row.tokens)
        if stop or token in self.eos_ids or len(row.tokens) >= request.params.max_tokens:
            row.done = True

    def _finish_done(self, requests: list[Request]) -> None:
        for request in list(requests):
            if request.reported or len(request.row_states) < request.rows:
                continue
            if not all(row.done for row in request.row_states):
                continue
            request.reported = True
            if request in self._active:
                self._active.remove(request)
            elapsed = time.monotonic() - request.submitted
            self._avg_request_s = 0.8 * self._avg_request_s + 0.2 * elapsed
            request.listener.finished([row.tokens for row in request.row_states])

    def _retire(self, leaving, error: BaseException | None = None) -> None:
        """Drop the rows for which leaving(row) holds (failing their requests when error is set)."""
        keep = [i for i, row in enumerate(self._rows) if not leaving(row)]
        if error is not None:
            failed = {row.request for row in self._rows if leaving(row)}
            for request in failed:
                if request in self._active:
                    self._active.remove(request)
                request.listener.failed(error)
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._batch = None
        else:
            self._batch.keep(keep)

    def _pick(self, logits: torch.Tensor, rows: list[_Row]) -> list[int]:
        """Greedy rows take the argmax (as generate() does); sampled rows draw from their request's RNG.

        Penalties come first, so they shape greedy and sampled choices alike.
        """
        logits = _penalised(logits, rows)
        picked = logits.argmax(dim=-1).tolist()
        for i, row in enumerate(rows):
            params = row.request.params
            if params.greedy:
                continue
            scaled = logits[i].float() / params.temperature
            kth = scaled.topk(min(SAMPLING_TOP_K, scaled.numel())).values[-1]
            probs = torch.softmax(scaled.masked_fill(scaled < kth, float("-inf")), dim=-1)
            if params.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(0) - sorted_probs > params.top_p
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            picked[i] = int(torch.multinomial(probs, 1, generator=row.request.generator))
        return picked


def _penalised(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
    """OpenAI's (and vLLM's) frequency and presence penalties, each row over its own tokens.

    logits[row, t] -= frequency_penalty * count + presence_penalty for every token t the
    row generated (count > 0; the prompt does not count). The counts of all penalised
    rows come from one scatter; rows without a penalty, and batches without any, are
    left alone (the same tensor comes back).
    """
    which = [i for i, row in enumerate(rows) if row.tokens and row.request.params.penalised]
    if not which:
        return logits
    width = max(len(rows[i].tokens) for i in which)
    ids = torch.zeros((len(which), width), dtype=torch.long)
    real = torch.zeros((len(which), width))
    for k, i in enumerate(which):
        tokens = rows[i].tokens
        ids[k, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        real[k, : len(tokens)] = 1.0
    counts = torch.zeros((len(which), logits.shape[-1])).scatter_add_(1, ids, real)
    params = [rows[i].request.params for i in which]
    frequency = torch.tensor([[p.frequency_penalty] for p in params])
    presence = torch.tensor([[p.presence_penalty] for p in params])
    penalty = frequency * counts + presence * (counts > 0)
    return logits.float().index_add(0, torch.tensor(which), penalty, alpha=-1)
