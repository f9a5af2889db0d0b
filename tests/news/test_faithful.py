"""The faithfulness checker: numbers, dates and names of a summary or fact against the article."""

from __future__ import annotations

import json
from typing import Any

import pytest

from newsdesk.news._faithful import (
    claims,
    cut_loop,
    is_faithful,
    is_fragment,
    lead_sentence,
    repair,
    unsupported,
)

pytestmark = pytest.mark.timeout(30)

ARTICLE = (
    "Harbor City council approved next year's $1.1 billion budget late on Monday after a "
    "twelve-hour session. The U.S. envoy, Mr. John Howard, said 1,200 jobs and ten million "
    "dollars were at stake. Australian troops watched. Three members voted against it, and "
    "the plan raises spending by 4.5 per cent from Aug. 1."
)


@pytest.mark.parametrize(
    ("phrase", "missing"),
    [
        # the demo's invented figure: $1.2 million for an article about $1.1 billion
        ("The council approved a $1.2 million budget.", ["1200000"]),
        ("The council approved a 1.1 billion dollar budget on Monday.", []),
        ("The council approved a budget of 1,100 million dollars.", []),  # same value
        ("It was a 12-hour session.", []),  # "twelve-hour" in the article
        ("The US envoy John Howard said 1200 jobs were at stake.", []),  # "U.S.", "1,200"
        ("Officials said $10 million was at stake.", []),  # "ten million dollars"
        ("Spending rises 4.5%.", []),
        ("Spending rises 5%.", ["5"]),
        ("For the first time in 24 months, the council met on Tuesday.", ["24", "tuesday"]),
        ("Three members voted against it in March.", ["march"]),
        ("The plan goes to the mayor in August.", []),  # the article says "Aug."
        ("The United States envoy spoke.", []),  # the article says "U.S."
        ("The United Nations envoy spoke.", ["nations"]),
        ("Australia's troops watched.", []),  # "Australian" in the article: the same name
        ("Prime Minister Howard spoke.", []),  # titles around a name the article gives
        ("Kestrel Motors will relocate staff.", ["kestrel", "motors"]),  # sentence-initial name
        ("The mayor and Sam Fake voted.", ["fake", "sam"]),
        ("One of the members voted against it.", []),  # "one" as a pronoun is no number
        ("The budget passed.", []),
    ],
)
def test_unsupported(phrase: str, missing: list[str]) -> None:
    assert unsupported(phrase, ARTICLE) == missing
    assert is_faithful(phrase, ARTICLE) is (not missing)


def test_claims_normalise_numbers_written_out() -> None:
    c = claims("ten million, twenty-five, three hundred thousand, one million and 2,500")
    assert c.numbers == {10_000_000, 25, 300_000, 1_000_000, 2500}
    assert claims("It may rain on Friday in May.").dates == {"friday", "may"}
    assert claims("The Labor Party's leader").names == {"labor", "party"}


@pytest.mark.parametrize(
    ("fact", "fragment"),
    [
        ("2.5, Kestrel Motors will relocate some staff to Saltmarsh.", True),
        ("and the mayor said it would pass", True),
        ("The council voted on the budget of", True),
        (", said the mayor.", True),
        ("Kestrel Motors will relocate some staff to Saltmarsh.", False),
        ("400 homes were evacuated in Lower Dell.", False),
        ("Мэр поручил откачать воду.", False),
        ("council approved the harbour budget", False),  # lower case, still a sentence
        ("which means higher taxes", True),
    ],
)
def test_is_fragment(fact: str, fragment: bool) -> None:
    assert is_fragment(fact) is fragment


def test_cut_loop() -> None:
    text = "на старые маршрута, как остая время на старые маршрута, как остая время"
    assert cut_loop(text) == ("на старые маршрута, как остая время", True)
    ok = "The council passed the budget and the mayor will sign the budget."
    assert cut_loop(ok) == (ok, False)


def test_lead_sentence_skips_abbreviations_and_cuts_long_leads() -> None:
    text = "Mr. Smith went to Washington on Monday to meet U.S. officials. Then he left."
    assert lead_sentence(text) == "Mr. Smith went to Washington on Monday to meet U.S. officials."
    long = "word " * 100
    out = lead_sentence(long, limit=50)
    assert out.endswith("…") and len(out) <= 51


def test_repair_replaces_an_invented_summary_and_drops_bad_facts() -> None:
    summary, facts, rep = repair(
        "Council approved a $1.2 million budget.",
        [
            "2.5, Kestrel Motors will move.",
            "Three members voted against it.",
            "Sam Fake voted.",
            "It passed on Friday.",
        ],
        ARTICLE,
    )
    assert summary == lead_sentence(ARTICLE)
    assert rep.summary_replaced == "unsupported: 1200000"
    assert facts == ["Three members voted against it."]
    assert [why for _, why in rep.facts_dropped] == [
        "fragment",
        "unsupported: fake, sam",
        "unsupported: friday",
    ]


def test_repair_keeps_a_faithful_answer_untouched() -> None:
    summary, facts, rep = repair(
        "The council approved a $1.1 billion budget.", ["Three members voted against it."], ARTICLE
    )
    assert summary == "The council approved a $1.1 billion budget."
    assert facts == ["Three members voted against it."] and not rep.changed


def test_repair_cuts_a_loop_and_falls_back_when_nothing_is_left() -> None:
    looped = "The council approved the budget after a long session, the council approved the budget"
    summary, _, rep = repair(looped, [], ARTICLE)
    assert summary == "The council approved the budget after a long session…"
    assert rep.summary_replaced == "loop cut"
    summary, _, rep = repair("the the budget the the budget the the budget", [], ARTICLE)
    assert summary == lead_sentence(ARTICLE) and rep.summary_replaced == "loop"


def test_repair_of_a_translation_checks_numbers_only_and_keeps_the_language() -> None:
    # names are transliterated in a translation; numbers are not
    summary, facts, rep = repair(
        "Совет Харбор-Сити утвердил бюджет в 1,1 миллиарда долларов.",
        ["Джон Ховард сказал, что под угрозой 1200 рабочих мест.", "Под угрозой 5000 мест."],
        ARTICLE,
        translated=True,
    )
    assert summary.startswith("Совет")
    assert facts == ["Джон Ховард сказал, что под угрозой 1200 рабочих мест."]


def test_title_supports_claims_and_gives_the_lead_when_there_is_no_text() -> None:
    summary, _, rep = repair("The Mariners win the title.", [], "", title="Mariners clinch title")
    assert summary == "The Mariners win the title." and not rep.changed
    summary, _, _ = repair("The Rovers win the title.", [], "", title="Mariners clinch title")
    assert summary == "Mariners clinch title"


# --- through a remote model: the test provider's scripted answer, over HTTP via LiteLLM -----------


def _opaque(text: str) -> str:
    """JSON string escapes for every letter and digit: the scripted answer travels inside the
    article (the provider reads it from the prompt), and must not make its own claims true."""
    return "".join(f"\\u{ord(c):04x}" if c.isalnum() else c for c in text)


@pytest.mark.timeout(120)  # the first LiteLLM import of a session is slow on a busy machine
async def test_a_remote_models_invented_figures_never_reach_the_reader(
    openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsdesk import Gateway
    from newsdesk.news._analyze import analyze_article
    from newsdesk.news._models import Article

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    answer = {
        "summary": _opaque("The council approved a $1.2 million budget on Friday."),
        "topic": "politics",
        "tone": "neutral",
        "sentiment": 0.0,
        "key_facts": [
            _opaque("2.5, Kestrel Motors will relocate some staff."),
            _opaque("Three members voted against it."),
            _opaque("Mayor Sam Fake signed it."),
        ],
        "entities": {"people": [], "organizations": [], "places": []},
    }
    directive = "[[json:" + json.dumps(answer).replace("\\\\", "\\") + "]]"
    article = Article(
        id="b" * 24, source="src", url="https://x.test/2", title="Council passes budget",
        text=ARTICLE + " " + directive,
    )  # fmt: skip
    gw = Gateway(cache="off")
    try:
        r = await analyze_article(article, gw, model="openai/test", api_base=openai_server.url)
    finally:
        gw.close()
    assert r.analysis.summary == lead_sentence(ARTICLE)  # the invented $1.2 million is gone
    assert r.analysis.key_facts == ["Three members voted against it."]
