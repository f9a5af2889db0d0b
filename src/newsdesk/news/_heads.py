"""Trained linear heads over the article vectors: topic and tone, learned from labelled news.

The zero-shot classifiers (``_embed.TopicClassifier``, ``_tone.ToneClassifier``) compare an
article's e5 passage vector with the mean vector of a few example sentences per class. That tops
out around three articles in four on lee50 (docs/QUALITY.md): a centroid of four sentences cannot
say which directions of the space matter for a class. A multinomial logistic regression learned
from a few thousand labelled news articles can, and it costs the same: one
``(dim, k)`` product on the vector the article already has.

The training sets are ``bench/data/real_train_labels.jsonl`` (3,594 real 2017 news articles,
hand-labelled; news100, the held-out set, excluded) and ``bench/data/written_train.jsonl``
(1,645 articles written for the project, every topic); ``bench/train_heads.py`` trains the heads
with :func:`train` on their stored vectors and writes ``heads.npz`` beside this module. A head is
only used for vectors of the embedder it was trained on (its ``embedder`` name) and for the
taxonomy it was trained on: anything else falls back to the zero-shot prototypes.
``tests/news/test_heads.py`` checks the file against the training sets, so it cannot go stale
unnoticed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = Path(__file__).with_name("heads.npz")

__all__ = ["LinearHead", "load_head", "train", "FILE"]


@dataclass(frozen=True)
class LinearHead:
    """``vectors @ weights + bias`` over ``labels``, for vectors of ``embedder``.

    The classifiers add ``prior_weight`` times their zero-shot logits (the prototype cosines at
    their temperature) to these: what the training sets do not teach, the prototypes still say.
    The weight was chosen with the regularisation (``bench/train_heads.py --search``), on
    cross-validation over the real training set plus lee50, the tuning set."""

    name: str
    embedder: str
    labels: tuple[str, ...]
    weights: np.ndarray  # (dim, k), float32; the training set's standardisation is folded in
    bias: np.ndarray  # (k,)
    prior_weight: float = 0.0

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32).reshape(-1, self.weights.shape[0])
        return v @ self.weights + self.bias


def train(
    x: np.ndarray,
    y: np.ndarray,
    n_labels: int,
    *,
    l2: float,
    steps: int = 600,
    rate: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent (deterministic: no random
    start, no shuffling), on features standardised with the training set's mean and spread.
    Returns ``(weights, bias)`` that act on *raw* vectors: the standardisation is folded in."""
    x = np.asarray(x, dtype=np.float64)
    mean, spread = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / spread
    n, dim = z.shape
    onehot = np.eye(n_labels)[np.asarray(y)]
    w = np.zeros((dim, n_labels))
    b = np.zeros(n_labels)
    for _ in range(steps):
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) / n
        w -= rate * (z.T @ err + l2 * w)
        b -= rate * err.sum(axis=0)
    weights = w / spread[:, None]
    bias = b - mean @ weights
    return weights.astype(np.float32), bias.astype(np.float32)


_LOCK = threading.Lock()
_HEADS: dict[str, LinearHead] | None = None


def _bundled() -> dict[str, LinearHead]:
    global _HEADS
    with _LOCK:
        if _HEADS is None:
            heads: dict[str, LinearHead] = {}
            try:
                with np.load(FILE, allow_pickle=False) as data:
                    embedder = str(data["embedder"])
                    for name in ("topic", "tone"):
                        if f"{name}_weights" not in data.files:
                            continue
                        heads[name] = LinearHead(
                            name=name,
                            embedder=embedder,
                            labels=tuple(str(x) for x in data[f"{name}_labels"].tolist()),
                            weights=np.asarray(data[f"{name}_weights"], dtype=np.float32),
                            bias=np.asarray(data[f"{name}_bias"], dtype=np.float32),
                            prior_weight=float(data[f"{name}_prior_weight"]),
                        )
            except (OSError, KeyError, ValueError):
                heads = {}  # missing or unreadable: the zero-shot prototypes decide, as before
            _HEADS = heads
        return _HEADS


def load_head(name: str, embedder: str, labels: Sequence[str]) -> LinearHead | None:
    """The bundled head ``name`` if it was trained for ``embedder`` and exactly ``labels``."""
    head = _bundled().get(name)
    if head is None or head.embedder != embedder or set(head.labels) != set(labels):
        return None
    return head
