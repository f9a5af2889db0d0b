"""Batched decoding for the embedded model: several generations in one llama.cpp context.

One dedicated thread owns the llama.cpp context (llama.cpp is not thread-safe) and runs a step
loop, the way llama.cpp's ``parallel`` example and its server do:

* **Batched decoding.** Every step puts the next token of every running sequence (distinct
  sequence ids) into one ``llama_decode`` batch; for a 135M model on CPU one token's matrix work
  is small, so decoding N sequences together costs far less than N separate steps.
* **Continuous batching.** A new request joins at the next step (its prompt is evaluated in the
  same batch as the others' next tokens); a finished or cancelled one frees its sequence at once.
* **Shared-prefix reuse.** Before evaluating a prompt, the longest common token prefix with the
  prefix cache (sequence 0) - or with a running sequence's prompt - is copied into the new
  sequence (``llama_memory_seq_cp``: with a unified KV cache that tags the same cells, nothing is
  recomputed or duplicated), so every analysis pays only for its own article. Sequence 0 keeps
  the common prefix of the prompts seen (system prompt + instructions).
* **Per-sequence sampling.** Each sequence has its own grammar (JSON schema) and sampler chain.
  Greedy decoding with a grammar checks the unconstrained best token against the grammar first
  and only filters the whole vocabulary when it is rejected (what llama.cpp's common sampler
  does): the same token as filtering first, at a fraction of the cost.

Memory is bounded: one context of ``n_ctx`` cells is created up front; a request reserves the
cells it may need (its own prompt tokens + ``max_tokens``) and waits while they are not free.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CACHE_SEQ = 0  # the prefix cache's sequence id; generations use 1..parallel
MIN_REUSE = 16  # a shorter common prefix is not worth a copy (and is mostly the chat template)
N_BATCH = 512  # tokens per llama_decode call (prompt chunks + one token per running sequence)


@dataclass(frozen=True)
class Sampling:
    """What llama-cpp-python's ``create_chat_completion`` would use (same defaults)."""

    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    grammar: str | None = None  # GBNF text, root rule "root"
    max_tokens: int = 512
    stop: tuple[str, ...] = ()


@dataclass
class Finished:
    """The last item a generation's sink receives (after its text deltas)."""

    finish_reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    reused_tokens: int  # prompt tokens taken from the prefix cache or a running sequence


Sink = Callable[[object], None]  # receives str deltas, then a Finished or an exception


class Generation:
    """Handle of one submitted generation; ``cancel()`` frees its sequence at the next step."""

    _ids = itertools.count()

    def __init__(self, prompt: list[int], sampling: Sampling, sink: Sink) -> None:
        self.id = next(self._ids)
        self.prompt = prompt
        self.sampling = sampling
        self.sink = sink
        self.cancelled = threading.Event()
        self._engine: Engine | None = None

    def cancel(self) -> None:
        self.cancelled.set()
        if self._engine is not None:
            self._engine.wake()


@dataclass
class EngineStats:
    requests: int = 0
    prompt_tokens: int = 0  # prompt tokens of all requests
    prompt_evaluated: int = 0  # prompt tokens actually run through the model
    prefix_hits: int = 0  # requests that reused a cached/shared prefix
    reused_tokens: int = 0
    completion_tokens: int = 0
    steps: int = 0
    max_active: int = 0
    decode_seconds: float = 0.0


@dataclass
class _Seq:
    gen: Generation
    seq_id: int
    n_past: int  # positions already in the KV cache for this sequence
    reserve: int  # cells reserved for it
    reused: int
    chain: Any = None  # llama_sampler* (full chain) or None
    grammar: Any = None  # llama_sampler* (grammar alone, for the greedy fast path) or None
    next_token: int | None = None  # sampled, to be fed at the next step
    completion: int = 0
    text: str = ""  # decoded completion text so far
    sent: int = 0  # characters of ``text`` already handed to the sink
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("ignore"))

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.gen.prompt)


def _lcp(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    """Owns one llama.cpp context with ``parallel`` sequences for the model of ``llama``."""

    def __init__(
        self, llama: Any, *, parallel: int, n_ctx: int, n_ctx_seq: int, threads: int
    ) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self.llama = llama
        self.parallel = parallel
        self.n_ctx_seq = n_ctx_seq  # per-request window, as before (prompt + completion)
        model = llama._model
        self._vocab = model.vocab
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = N_BATCH
        params.n_ubatch = N_BATCH
        params.n_seq_max = parallel + 1
        params.n_threads = threads
        params.n_threads_batch = threads
        # One cell pool for all sequences: a copied prefix is the same cells, tagged twice.
        params.kv_unified = True
        params.no_perf = True
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama() does
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if ctx is None:
            raise RuntimeError("llama.cpp could not create the batched context")
        self._ctx = ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._piece = ctypes.create_string_buffer(256)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_arr = llama_cpp.llama_token_data_array(self._one, 1, -1, False)
        self._cands = np.zeros(
            self._n_vocab, dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)]
        )
        self._cands_arr = llama_cpp.llama_token_data_array(
            self._cands.ctypes.data_as(llama_cpp.llama_token_data_p), self._n_vocab, -1, False
        )
        self._ids = np.arange(self._n_vocab, dtype=np.int32)

        self._cond = threading.Condition()
        self._incoming: list[Generation] = []
        self._stop = False
        self._pending: list[Generation] = []
        self._active: dict[int, _Seq] = {}
        self._cache: list[int] = []  # tokens held by CACHE_SEQ
        self.stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name="newsdesk-llama", daemon=True)
        self._thread.start()

    # --- called from any thread -------------------------------------------------------------
    def submit(self, gen: Generation) -> None:
        if len(gen.prompt) >= self.n_ctx_seq:
            raise ValueError(
                f"Requested tokens ({len(gen.prompt)}) exceed context window of {self.n_ctx_seq}"
            )
        gen._engine = self
        with self._cond:
            if self._stop:
                raise RuntimeError("the embedded model is shut down")
            self._incoming.append(gen)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop

    def running(self) -> list[int]:
        """Sequence ids decoding now (a snapshot; for tests and progress displays)."""
        return list(self._active)

    def idle(self) -> bool:
        with self._cond:
            return not (self._incoming or self._pending or self._active)

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the loop (unfinished generations end as cancelled) and free the context.
        Returns False if the loop did not stop in time (then nothing is freed)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the decode thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._stop or self._incoming or self._pending or self._active):
                        self._cond.wait()
                    if self._stop:
                        break
                    self._pending.extend(self._incoming)
                    self._incoming.clear()
                self._reap()
                self._admit()
                if self._active:
                    self._step()
        except BaseException as exc:  # hand the failure to every waiting caller
            for s in list(self._active.values()):
                self._end(s, exc)
            for g in self._pending:
                self._send(g, exc)
            self._pending.clear()
            with self._cond:
                self._stop = True
                for g in self._incoming:
                    self._send(g, exc)
                self._incoming.clear()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for s in list(self._active.values()):
            self._end(s, "cancelled")
        for g in self._pending:
            self._send(g, Finished("cancelled", len(g.prompt), 0, 0))
        self._pending.clear()
        with self._cond:
            for g in self._incoming:
                self._send(g, Finished("cancelled", len(g.prompt), 0, 0))
            self._incoming.clear()
        self._ll.llama_batch_free(self._batch)
        self._ll.llama_free(self._ctx)

    @staticmethod
    def _send(gen: Generation, item: object) -> None:
        with contextlib.suppress(Exception):  # a sink whose consumer is gone must not stop the loop
            gen.sink(item)

    def _reap(self) -> None:
        for s in list(self._active.values()):
            if s.gen.cancelled.is_set():
                self._end(s, "cancelled")
        keep = []
        for g in self._pending:
            if g.cancelled.is_set():
                self._send(g, Finished("cancelled", len(g.prompt), 0, 0))
            else:
                keep.append(g)
        self._pending = keep

    def _free_cells(self) -> int:
        return self.n_ctx - len(self._cache) - sum(s.reserve for s in self._active.values())

    def _admit(self) -> None:
        waiting: list[Generation] = []
        for gen in self._pending:
            used = {s.seq_id for s in self._active.values()}
            free_ids = [i for i in range(1, self.parallel + 1) if i not in used]
            if not free_ids or waiting:  # first come, first served
                waiting.append(gen)
                continue
            prompt = gen.prompt
            # The longest already-computed prefix: the cache, or a running sequence's prompt.
            src, reuse = CACHE_SEQ, _lcp(self._cache, prompt)
            defer = False
            for s in self._active.values():
                common = _lcp(s.gen.prompt, prompt)
                if common >= MIN_REUSE and common > reuse:
                    if s.n_past >= common:
                        src, reuse = s.seq_id, common
                    else:
                        defer = True  # its prompt is being evaluated now: copy it next step
            if defer:
                waiting.append(gen)
                continue
            reuse = min(reuse, len(prompt) - 1)  # evaluate at least one token, for its logits
            if reuse < MIN_REUSE:
                reuse = 0
            need = len(prompt) - reuse + min(gen.sampling.max_tokens, self.n_ctx_seq - len(prompt))
            if need > self._free_cells():
                if not self._active and self._cache:
                    self._drop_cache()
                    reuse = 0 if src == CACHE_SEQ else reuse
                    need = (
                        len(prompt)
                        - reuse
                        + min(gen.sampling.max_tokens, self.n_ctx_seq - len(prompt))
                    )
                if need > self._free_cells():
                    if not self._active:  # can never fit
                        self._send(
                            gen,
                            ValueError(
                                f"the request needs {need} cells; the context has {self.n_ctx}"
                            ),
                        )
                        continue
                    waiting.append(gen)
                    continue
            seq_id = free_ids[0]
            if reuse:
                self._ll.llama_memory_seq_cp(self._mem, src, seq_id, 0, reuse)
                if src != CACHE_SEQ:  # a longer common prefix than the cache's: keep it instead
                    self._drop_cache()
                    self._ll.llama_memory_seq_cp(self._mem, src, CACHE_SEQ, 0, reuse)
                    self._cache = prompt[:reuse]
                elif reuse < len(self._cache):  # the cache converges on what prompts share
                    self._ll.llama_memory_seq_rm(self._mem, CACHE_SEQ, reuse, -1)
                    self._cache = self._cache[:reuse]
            seq = _Seq(gen=gen, seq_id=seq_id, n_past=reuse, reserve=need, reused=reuse)
            try:
                self._init_sampling(seq)
            except Exception as exc:  # a bad grammar costs its own request only
                self._end(seq, exc)
                continue
            self._active[seq_id] = seq
            st = self.stats
            st.requests += 1
            st.prompt_tokens += len(prompt)
            st.prefix_hits += reuse > 0
            st.reused_tokens += reuse
            st.max_active = max(st.max_active, len(self._active))
        self._pending = waiting

    def _drop_cache(self) -> None:
        self._ll.llama_memory_seq_rm(self._mem, CACHE_SEQ, -1, -1)
        self._cache = []

    def _init_sampling(self, seq: _Seq) -> None:
        ll, sp = self._ll, seq.gen.sampling
        plain_greedy = (
            sp.temperature == 0.0
            and sp.repeat_penalty == 1.0
            and sp.frequency_penalty == 0.0
            and sp.presence_penalty == 0.0
        )
        if sp.grammar is not None:
            grammar = ll.llama_sampler_init_grammar(self._vocab, sp.grammar.encode(), b"root")
            if grammar is None:
                raise ValueError("llama.cpp rejected the JSON-schema grammar")
        else:
            grammar = None
        if plain_greedy:
            seq.grammar = grammar
            return
        # The chain llama-cpp-python builds (Llama._init_sampler), in the same order.
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        add = ll.llama_sampler_chain_add
        add(
            chain,
            ll.llama_sampler_init_penalties(
                self._n_vocab, 64, sp.repeat_penalty, sp.frequency_penalty, sp.presence_penalty
            ),
        )
        if grammar is not None:
            add(chain, grammar)
        # create_completion seeds from Llama(seed=0) when no seed is given: the same every call.
        seed = sp.seed if sp.seed is not None else random.Random(0).randint(0, 2**32)
        if sp.temperature < 0:
            add(chain, ll.llama_sampler_init_dist(seed))
        elif sp.temperature == 0:
            add(chain, ll.llama_sampler_init_greedy())
        else:
            add(chain, ll.llama_sampler_init_top_k(sp.top_k))
            add(chain, ll.llama_sampler_init_typical(sp.typical_p, 1))
            add(chain, ll.llama_sampler_init_top_p(sp.top_p, 1))
            add(chain, ll.llama_sampler_init_min_p(sp.min_p, 1))
            add(chain, ll.llama_sampler_init_temp(sp.temperature))
            add(chain, ll.llama_sampler_init_dist(seed))
        seq.chain = chain

    def _step(self) -> None:
        ll, batch = self._ll, self._batch
        n = 0
        outputs: list[tuple[_Seq, int]] = []

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = logits
            n += 1

        # Running sequences first: one token each keeps every stream moving while prompts load.
        for s in self._active.values():
            if not s.prefilling and s.next_token is not None:
                outputs.append((s, n))
                add(s.next_token, s.n_past, s.seq_id, True)
                s.n_past += 1
        for s in self._active.values():
            if s.prefilling and n < N_BATCH:
                prompt = s.gen.prompt
                take = min(len(prompt) - s.n_past, N_BATCH - n)
                for k in range(take):
                    pos = s.n_past + k
                    last = pos == len(prompt) - 1
                    if last:
                        outputs.append((s, n))
                    add(prompt[pos], pos, s.seq_id, last)
                s.n_past += take
                self.stats.prompt_evaluated += take
        if n == 0:
            return
        batch.n_tokens = n
        started = time.perf_counter()
        rc = ll.llama_decode(self._ctx, batch)
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.steps += 1
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for s, i in outputs:
            token = self._sample(s, i)
            self._accept(s, token)

    def _sample(self, s: _Seq, i: int) -> int:
        ll = self._ll
        if s.chain is not None:
            return int(ll.llama_sampler_sample(s.chain, self._ctx, i))
        logits = np.ctypeslib.as_array(
            ll.llama_get_logits_ith(self._ctx, i), shape=(self._n_vocab,)
        )
        token = int(logits.argmax())
        if s.grammar is None:
            return token
        # Greedy under a grammar: if the best token is allowed it is the answer; only otherwise
        # filter the whole vocabulary (identical result, a fraction of the work).
        self._one[0].id = token  # type: ignore[assignment]
        self._one[0].logit = float(logits[token])
        self._one_arr.size = 1
        self._one_arr.selected = -1
        self._one_arr.sorted = False
        ll.llama_sampler_apply(s.grammar, ctypes.byref(self._one_arr))
        if self._one[0].logit == float("-inf"):
            cands = self._cands
            cands["id"] = self._ids
            cands["logit"] = logits
            cands["p"] = 0.0
            self._cands_arr.data = cands.ctypes.data_as(ll.llama_token_data_p)
            self._cands_arr.size = self._n_vocab
            self._cands_arr.selected = -1
            self._cands_arr.sorted = False
            ll.llama_sampler_apply(s.grammar, ctypes.byref(self._cands_arr))
            token = int(cands["id"][int(cands["logit"].argmax())])
        ll.llama_sampler_accept(s.grammar, token)
        return token

    def _accept(self, s: _Seq, token: int) -> None:
        ll, sp = self._ll, s.gen.sampling
        if ll.llama_vocab_is_eog(self._vocab, token):
            self._end(s, "stop")
            return
        s.completion += 1
        self.stats.completion_tokens += 1
        n = ll.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        piece = self._piece.raw[:n] if n > 0 else b""
        s.text += s.decoder.decode(piece)
        if sp.stop:
            for stop in sp.stop:
                at = s.text.find(stop)
                if at >= 0:
                    s.text = s.text[:at]
                    self._end(s, "stop")
                    return
        if s.completion >= min(sp.max_tokens, self.n_ctx_seq - len(s.gen.prompt)):
            self._end(s, "length")
            return
        self._flush(s, hold=True)
        s.next_token = token

    def _flush(self, s: _Seq, *, hold: bool) -> None:
        end = len(s.text)
        if hold:  # keep back what could be the start of a stop string
            for stop in s.gen.sampling.stop:
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if s.text.endswith(stop[:k]):
                        end = min(end, len(s.text) - k)
                        break
        if end > s.sent:
            self._send(s.gen, s.text[s.sent : end])
            s.sent = end

    def _end(self, s: _Seq, outcome: str | BaseException) -> None:
        ll = self._ll
        self._active.pop(s.seq_id, None)
        prompt = s.gen.prompt
        if outcome in ("stop", "length") and _lcp(self._cache, prompt) < MIN_REUSE:
            # The cache serves other prompts (or none): keep this one's instead, so the next
            # request like it - often the next one, one at a time - starts from its prefix.
            self._drop_cache()
            ll.llama_memory_seq_cp(self._mem, s.seq_id, CACHE_SEQ, 0, len(prompt))
            self._cache = list(prompt)
        ll.llama_memory_seq_rm(self._mem, s.seq_id, -1, -1)  # its cells are free at once
        if s.chain is not None:
            ll.llama_sampler_free(s.chain)  # frees the grammar in it too
        elif s.grammar is not None:
            ll.llama_sampler_free(s.grammar)
        s.chain = s.grammar = None
        if isinstance(outcome, BaseException):
            self._send(s.gen, outcome)
            return
        if outcome != "cancelled":
            s.text += s.decoder.decode(b"", final=True)
            self._flush(s, hold=False)
        self._send(s.gen, Finished(outcome, len(s.gen.prompt), s.completion, s.reused))


def iterate(engine: Engine, prompt: list[int], sampling: Sampling) -> Iterator[object]:
    """Blocking iterator over one generation's items (str deltas, then ``Finished``);
    leaving it early cancels the generation."""
    items: queue.SimpleQueue[object] = queue.SimpleQueue()
    gen = Generation(prompt, sampling, items.put)
    engine.submit(gen)
    try:
        while True:
            item = items.get()
            check(item)
            yield item
            if isinstance(item, Finished):
                return
    finally:
        gen.cancel()


def check(item: object) -> None:
    """Raise what a generation's sink received in place of text: an error, or the end of a
    generation the caller did not cancel (the engine shut down under it)."""
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, Finished) and item.finish_reason == "cancelled":
        raise RuntimeError("the embedded model shut down before the answer was finished")
