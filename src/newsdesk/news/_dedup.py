"""Drop articles already seen: exact duplicates, and the same story retold by another source.

Exact: the same global GUID, the same canonical URL, or the same normalized title+text.
Near: MinHash over word 3-shingles with an LSH index, so each new article is compared with
likely matches only, never with every article kept so far. Pure and incremental: articles come
in one source at a time while others are still being fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from datasketch import MinHash, MinHashLSH

from newsdesk.news._models import Article
from newsdesk.news._normalize import canonical_url, content_hash, normalize_text

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


class Deduplicator:
    """Remembers kept articles; ``add`` says whether a new one is new.

    ``threshold`` is the Jaccard similarity of shingle sets above which two articles from
    different sources are one story. Near-duplicates within one source are kept: a feed's
    templated items ("Markets close higher", daily) look alike but are different news.
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
        self._seed = seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._by_key: dict[tuple[str, str], Article] = {}
        self._by_lsh_key: dict[str, tuple[Article, set[str]]] = {}
        self._kept: list[Article] = []
        self._stored: set[int] = set()  # ids (id()) of seeded copies not yet met in this run

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def kept(self) -> list[Article]:
        """Every article kept so far, seeded ones included, in arrival order."""
        return list(self._kept)

    def seed(self, articles: Iterable[Article]) -> None:
        """Remember already-known articles (from the store) so they are not reported again."""
        for article in articles:
            self.add(article)

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
        for kind, key in self._exact_keys(article):
            kept = self._by_key.get((kind, key))
            if kept is not None:
                return Duplicate(kept, kind)
        sh = self._shingles(article)
        if sh is None:
            return None
        return self._near(article, sh, self._minhash(sh))

    def add(self, article: Article) -> Article | None:
        """``article`` if it is new (it is then remembered), or None if it repeats a kept one.

        On a repeat, the duplicate's source is appended to the kept article's ``sources``, so
        the kept article ends up listing every source that carried the story.
        """
        keys = self._exact_keys(article)
        for kind, key in keys:
            kept = self._by_key.get((kind, key))
            if kept is not None:
                return self._repeat(kept, article)
        sh = self._shingles(article)
        mh = self._minhash(sh) if sh is not None else None
        if sh is not None and mh is not None:
            dup = self._near(article, sh, mh)
            if dup is not None:
                return self._repeat(dup.kept, article)

        if not article.sources:
            article.sources = [article.source]
        elif article.source not in article.sources:
            article.sources.insert(0, article.source)
        for kind, key in keys:
            self._by_key[(kind, key)] = article
        if sh is not None and mh is not None:
            lsh_key = str(len(self._kept))
            self._lsh.insert(lsh_key, mh)
            self._by_lsh_key[lsh_key] = (article, sh)
        self._kept.append(article)
        return article

    # --- internals ---------------------------------------------------------------------------

    def _repeat(self, kept: Article, article: Article) -> Article | None:
        """``article`` repeats ``kept``: None, or the stored copy the first time it is met."""
        self._merge(kept, article)
        if id(kept) in self._stored:
            self._stored.discard(id(kept))
            return kept
        return None

    @staticmethod
    def _merge(kept: Article, dup: Article) -> None:
        for name in [dup.source, *dup.sources]:
            if name and name not in kept.sources:
                kept.sources.append(name)

    @staticmethod
    def _exact_keys(article: Article) -> list[tuple[MatchKind, str]]:
        keys: list[tuple[MatchKind, str]] = []
        guid = (article.guid or "").strip()
        if guid:
            # "42" is unique only inside its feed; a URL, URN or tag: GUID is unique anywhere.
            if guid.lower().startswith(("http://", "https://", "urn:", "tag:")):
                keys.append(("guid", canonical_url(guid)))
            else:
                keys.append(("guid", f"{article.source}\x00{guid}"))
        if article.url:
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

    def _shingles(self, article: Article) -> set[str] | None:
        sh = shingles(f"{article.title} {article.text}", self.shingle_size)
        return sh if len(sh) >= self.min_shingles else None

    def _minhash(self, sh: set[str]) -> MinHash:
        mh = MinHash(num_perm=self.num_perm, seed=self._seed)
        mh.update_batch([s.encode("utf-8") for s in sh])
        return mh

    def _near(self, article: Article, sh: set[str], mh: MinHash) -> Duplicate | None:
        best: Duplicate | None = None
        for lsh_key in self._lsh.query(mh):
            kept, kept_sh = self._by_lsh_key[lsh_key]
            if kept.source == article.source:
                continue
            # LSH only proposes candidates; the exact Jaccard of the stored shingle sets decides,
            # so the verdict does not depend on MinHash's estimation noise.
            sim = jaccard(sh, kept_sh)
            if sim >= self.threshold and (best is None or sim > best.similarity):
                best = Duplicate(kept, "near", sim)
        return best
