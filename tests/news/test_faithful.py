"""The faithfulness checker: numbers, dates and names of a summary or fact against the article."""

from __future__ import annotations

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
    "the plan raises spending by 4.5 per cent."
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
