"""Drop articles already seen: exact duplicates, and the same story retold by another source.

Exact: the same global GUID, the same canonical URL, or the same normalized title+text.
Near: MinHash over word 3-shingles with a banded LSH index, so each new article is compared with
likely matches only, never with every article kept so far. Incremental (articles come in one
source at a time while others are still being fetched) and batched: ``add_many`` signs a whole
chunk of articles in a few numpy operations, so a 20,000-item feed costs about a second, and a
caller can stop between chunks once it has enough new articles (``--limit``).

The signatures follow datasketch's MinHash scheme (universal hashing ``(a*h + b) mod p`` over
32-bit shingle hashes) computed for many articles at once; datasketch's one-object-per-article
API costs Python work per article and its one LSH index handed back every same-source
near-duplicate as a candidate (a feed's templated daily items made that quadratic). Here the
index's buckets are split by source, so only other sources' articles are ever candidates.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import numpy as np

from newsdesk.news._models import Article
from newsdesk.news._normalize import (
    canonical_url,
    content_hash,
    normalize_text,
    normalized_words,
)

__all__ = ["Deduplicator", "Duplicate", "shingles", "jaccard"]

MatchKind = Literal["guid", "url", "content", "near"]


@dataclass(frozen=True)
class Duplicate:
    """Why an article was dropped: which kept article it repeats, and how it matched."""

    kept: Article
    kind: MatchKind
    similarity: float = 1.0


def shingles(text: str, size: int = 3) -> set[str]:
    """Word ``size``-shingles of normalized text (the whole text when it is shorter)."""
    words = normalize_text(text).split()
    if len(words) <= size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
# Shingle hashes are combined from word hashes with these odd multipliers (mod 2**64).
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
# (sorted unique shingle hashes, MinHash signature), or None for a text with too few shingles
_Signed = tuple[np.ndarray, np.ndarray] | None
# Signature cells computed per numpy step (num_perm x shingles): bounds the temporary memory.
_CELLS = 4_000_000


def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positives + false negatives around ``threshold``: the same
    choice datasketch's MinHashLSH makes (equal weights), by numeric integration."""
    xs = np.linspace(0.0, 1.0, 201)
    best = (1, num_perm)
    best_err = float("inf")
    for b in range(1, num_perm + 1):
        r = num_perm // b
        p = 1 - (1 - xs**r) ** b
        fp = float(np.where(xs <= threshold, p, 0.0).sum())
        fn = float(np.where(xs >= threshold, 1 - p, 0.0).sum())
        if fp + fn < best_err:
            best, best_err = (b, r), fp + fn
    return best


class Deduplicator:
    """Remembers kept articles; ``add`` / ``add_many`` say whether new ones are new.

    ``threshold`` is the Jaccard similarity of shingle sets above which two articles from
    different sources are one story. Near-duplicates within one source are kept: a feed's
    templated items ("Markets close higher", daily) look alike but are different news.
    Thread-safe: sources may be deduplicated from worker threads.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        num_perm: int = 64,
        shingle_size: int = 3,
        min_shingles: int = 8,
        seed: int = 1,
    ) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        # Below this, two short blurbs share shingles by chance ("the prime minister said").
        self.min_shingles = min_shingles
        gen = np.random.RandomState(seed)  # the permutations datasketch draws for this seed
        self._a = gen.randint(1, int(_PRIME), num_perm, dtype=np.uint64)[:, None]
        self._b = gen.randint(0, int(_PRIME), num_perm, dtype=np.uint64)[:, None]
        self._n_bands, self._rows = _bands(threshold, num_perm)
        # band -> band key -> the index into _near_kept of the one article with that key (most
        # keys: a plain int, no container for the garbage collector to walk), or, once several
        # share it, source -> their indices
        self._tables: list[dict[bytes, int | dict[str, list[int]]]] = [
            {} for _ in range(self._n_bands)
        ]
        self._near_kept: list[tuple[Article, np.ndarray]] = []
        self._by_key: dict[tuple[str, str], Article] = {}
        self._kept: list[Article] = []
        self._stored: set[int] = set()  # ids (id()) of seeded copies not yet met in this run
        self._word_hash: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def kept(self) -> list[Article]:
        """Every article kept so far, seeded ones included, in arrival order."""
        return list(self._kept)

    def seed(self, articles: Iterable[Article]) -> None:
        """Remember already-known articles (from the store) so they are not reported again."""
        self.add_many(list(articles))

    def seed_stored(self, articles: Iterable[Article]) -> None:
        """Remember copies kept (and analyzed) by earlier runs. The first article of this run
        that repeats one of them is answered with the stored copy itself (``add`` returns it),
        so which copy of a syndicated story is kept does not depend on which source is parsed
        first: a warm rerun finds the stored analysis instead of calling the model."""
        for article in articles:
            article = article.model_copy(update={"sources": [article.source]})
            if self.add(article) is article:
                self._stored.add(id(article))

    def find_duplicate(self, article: Article) -> Duplicate | None:
        """The kept article ``article`` repeats, without remembering anything."""
        with self._lock:
            for kind, key in self._exact_keys(article):
                kept = self._by_key.get((kind, key))
                if kept is not None:
                    return Duplicate(kept, kind)
            signed = self._sign([article])[0]
            return self._near(article, *signed) if signed is not None else None

    def add(self, article: Article) -> Article | None:
        """``article`` if it is new (it is then remembered), or None if it repeats a kept one.

        On a repeat, the duplicate's source is appended to the kept article's ``sources``, so
        the kept article ends up listing every source that carried the story.
        """
        verdict = self.add_many([article])[0]
        return None if isinstance(verdict, Duplicate) else verdict

    def add_many(self, articles: Sequence[Article]) -> list[Article | Duplicate]:
        """``add`` for a batch, in order: per article, itself when new (remembered), or the
        ``Duplicate`` saying which kept article it repeats (whose ``sources`` now list it).

        Blocking and CPU-bound (~50 µs an article): call it from a worker thread, in chunks when
        the caller may stop early.
        """
        with self._lock:
            # Exact keys first: an exact duplicate needs no shingles at all.
            keys = [self._exact_keys(a) for a in articles]
            need = [i for i, k in enumerate(keys) if not self._exact_match(k)]
            signed = dict(zip(need, self._sign([articles[i] for i in need]), strict=True))
            out: list[Article | Duplicate] = []
            for i, article in enumerate(articles):
                out.append(self._decide(article, keys[i], signed.get(i)))
            return out

    # --- internals ---------------------------------------------------------------------------

    def _exact_match(self, keys: list[tuple[MatchKind, str]]) -> Duplicate | None:
        for kind, key in keys:
            kept = self._by_key.get((kind, key))
            if kept is not None:
                return Duplicate(kept, kind)
        return None

    def _decide(
        self,
        article: Article,
        keys: list[tuple[MatchKind, str]],
        signed: _Signed,
    ) -> Article | Duplicate:
        # checked again here: an earlier article of the same batch may have taken the key
        dup = self._exact_match(keys)
        if dup is None and signed is not None:
            dup = self._near(article, *signed)
        if dup is not None:
            self._merge(dup.kept, article)
            if id(dup.kept) in self._stored:
                # the first repeat of a copy kept by an earlier run is answered with that copy
                # (see seed_stored), so the kept copy does not depend on the parse order
                self._stored.discard(id(dup.kept))
                return dup.kept
            return dup
        if not article.sources:
            article.sources = [article.source]
        elif article.source not in article.sources:
            article.sources.insert(0, article.source)
        for kind, key in keys:
            self._by_key[(kind, key)] = article
        if signed is not None:
            sh, sig = signed
            index = len(self._near_kept)
            self._near_kept.append((article, sh))
            source = article.source
            for table, band_key in zip(self._tables, self._band_keys(sig), strict=True):
                bucket = table.get(band_key)
                if bucket is None:
                    table[band_key] = index
                    continue
                if isinstance(bucket, int):
                    bucket = table[band_key] = {self._near_kept[bucket][0].source: [bucket]}
                bucket.setdefault(source, []).append(index)
        self._kept.append(article)
        return article

    @staticmethod
    def _merge(kept: Article, dup: Article) -> None:
        for name in [dup.source, *dup.sources]:
            if name and name not in kept.sources:
                kept.sources.append(name)

    @staticmethod
    def _exact_keys(article: Article) -> list[tuple[MatchKind, str]]:
        keys: list[tuple[MatchKind, str]] = []
        guid = (article.guid or "").strip()
        canonical_guid = None
        if guid:
            # "42" is unique only inside its feed; a URL, URN or tag: GUID is unique anywhere.
            if guid.lower().startswith(("http://", "https://", "urn:", "tag:")):
                canonical_guid = canonical_url(guid)
                keys.append(("guid", canonical_guid))
            else:
                keys.append(("guid", f"{article.source}\x00{guid}"))
        if article.url:
            # many feeds' GUID is the link: canonicalise it once
            if canonical_guid is not None and article.url == guid:
                url = canonical_guid
            else:
                url = canonical_url(article.url)
            parts = urlsplit(url)
            # A bare site root names a site, not a story: feeds that link every item to the
            # home page must not collapse into one article.
            if not (
                parts.scheme in ("http", "https") and parts.path in ("", "/") and not parts.query
            ):
                keys.append(("url", url))
        if article.title or article.text:
            keys.append(
                ("content", article.content_hash or content_hash(article.title, article.text))
            )
        return keys

    def _shingle_hashes(self, articles: Sequence[Article]) -> list[np.ndarray | None]:
        """Per article, the sorted unique 64-bit hashes of its word shingles (None: too few).
        A shingle's hash is mixed from its words' hashes, so each word is hashed once; the
        mixing and sorting run once over the whole batch, not once per article."""
        size = self.shingle_size
        texts = [normalized_words(f"{a.title} {a.text}") for a in articles]
        cache = self._word_hash
        if len(cache) > 500_000:  # a bound on a long run's vocabulary
            cache.clear()
        # articles with enough words for min_shingles shingles, even if all distinct
        use = [i for i, words in enumerate(texts) if len(words) >= size + self.min_shingles - 1]
        out: list[np.ndarray | None] = [None] * len(articles)
        if not use:
            return out
        get = cache.get
        flat = [w for i in use for w in texts[i]]
        hashed = [get(w) for w in flat]
        if None in hashed:
            for w in flat:
                if w not in cache:
                    cache[w] = zlib.crc32(w.encode("utf-8"))
            hashed = [cache[w] for w in flat]
        wh = np.array(hashed, dtype=np.uint64)
        n = len(flat) - size + 1
        mixed = wh[:n].copy()
        for k in range(1, size):
            mixed = mixed * _MIX[(k - 1) % 2] + wh[k : k + n]
        # the shingles that start and end inside one article: its first len - size + 1 positions
        lengths = np.array([len(texts[i]) for i in use], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        counts = lengths - size + 1
        owner = np.repeat(np.arange(len(use)), counts)
        pos = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        values = mixed[np.repeat(starts, counts) + pos]
        order = np.lexsort((values, owner))  # by article, then by hash
        values, owner = values[order], owner[order]
        first = np.ones(len(values), dtype=bool)
        first[1:] = (values[1:] != values[:-1]) | (owner[1:] != owner[:-1])
        values, owner = values[first], owner[first]
        kept = np.bincount(owner, minlength=len(use))
        for i, sh, count in zip(use, np.split(values, np.cumsum(kept)[:-1]), kept, strict=True):
            if count >= self.min_shingles:
                out[i] = sh
        return out

    def _sign(self, articles: Sequence[Article]) -> list[_Signed]:
        """(shingle hashes, MinHash signature) per article (None: too few shingles), the
        signatures in chunks of articles whose shingles fit ``_CELLS`` numpy cells."""
        found = self._shingle_hashes(articles)
        shs = {i: sh for i, sh in enumerate(found) if sh is not None}
        out: list[_Signed] = [None] * len(articles)
        todo = list(shs)
        per_chunk = max(1, _CELLS // self.num_perm)
        start = 0
        while start < len(todo):
            chunk: list[int] = []
            total = 0
            while start < len(todo) and (not chunk or total + len(shs[todo[start]]) <= per_chunk):
                chunk.append(todo[start])
                total += len(shs[todo[start]])
                start += 1
            lengths = [len(shs[i]) for i in chunk]
            hv = np.concatenate([shs[i] for i in chunk]) & _MAX_HASH
            # datasketch: ((a * h + b) mod p) & max_hash, uint64 arithmetic wrapping as there.
            # p = 2**61 - 1, so x mod p is (x & p) + (x >> 61), less p at most once: a few
            # cheap operations in place instead of a 64-bit division per cell.
            phv = hv[None, :] * self._a
            phv += self._b
            high = phv >> np.uint64(61)
            phv &= _PRIME
            phv += high
            np.subtract(phv, _PRIME, out=phv, where=phv >= _PRIME)
            phv &= _MAX_HASH
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            mins = np.minimum.reduceat(phv, offsets, axis=1)
            for j, i in enumerate(chunk):
                out[i] = (shs[i], mins[:, j].astype(np.uint32))
        return out

    def _band_keys(self, sig: np.ndarray) -> list[bytes]:
        raw, step = sig.tobytes(), self._rows * sig.itemsize
        return [raw[b * step : (b + 1) * step] for b in range(self._n_bands)]

    def _near(self, article: Article, sh: np.ndarray, sig: np.ndarray) -> Duplicate | None:
        candidates: set[int] = set()
        for table, key in zip(self._tables, self._band_keys(sig), strict=True):
            bucket = table.get(key)
            if bucket is None:
                continue
            if isinstance(bucket, int):
                if self._near_kept[bucket][0].source != article.source:
                    candidates.add(bucket)
            else:
                for source, indices in bucket.items():
                    if source != article.source:  # same-source look-alikes are kept apart
                        candidates.update(indices)
        best: Duplicate | None = None
        for index in sorted(candidates):
            kept, kept_sh = self._near_kept[index]
            # LSH only proposes candidates; the exact Jaccard of the shingle sets decides, so the
            # verdict does not depend on MinHash's estimation noise.
            inter = len(np.intersect1d(sh, kept_sh, assume_unique=True))
            sim = inter / (len(sh) + len(kept_sh) - inter)
            if sim >= self.threshold and (best is None or sim > best.similarity):
                best = Duplicate(kept, "near", sim)
        return best
