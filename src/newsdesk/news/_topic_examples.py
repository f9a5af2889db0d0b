"""More topic example sentences, added to ``_embed.TOPIC_EXAMPLES`` (issue #13).

Written for the project against the kinds of article the zero-shot classifier confused on lee50
(docs/QUALITY.md): weapons inspections and terror financing read as *health* or *politics*,
protests against a government rule read as *health*, arms-export rules as *business*, a summit on
sustainable development as *politics*, a prince talking about his mother as *crime*. None is
copied from an evaluation article. Tuned on lee50 (76 % -> 90 % strict) and checked on the
written topic dev set in bench/embeddings.py (unchanged, 22/23) and the demo; the held-out figure
is news100's in bench/quality.py.
"""

from __future__ import annotations

MORE_TOPIC_EXAMPLES: dict[str, list[str]] = {
    "politics": [
        "Thousands of people protested in the capital against the government's new rules, and "
        "officials withdrew them.",
        "The two governments agreed to tighten export controls on missile technology to ease "
        "diplomatic tensions.",
        "The minister said the country's foreign workers were welcome and there was no threat to "
        "its sovereignty.",
        "The foreign ministry condemned the neighbouring state's actions and summoned its ambassador.",
    ],
    "conflict": [
        "Intelligence agencies say the regime may be hiding chemical and biological weapons, and "
        "weapons inspectors were sent back in.",
        "Wealthy donors were accused of funding the terror network behind the attacks.",
        "Investigators are questioning a suspected al-Qaeda member detained in connection with the "
        "bombing.",
        "Air raids on border villages killed civilians, and the government blamed separatist fighters.",
    ],
    "entertainment": [
        "The prince spoke about his late mother and the royal family in a new interview.",
        "The pop star's divorce and the tabloid stories about her private life made headlines.",
        "The streaming service renewed the drama series for another season after strong ratings.",
    ],
    "environment": [
        "World leaders gathered at the summit on sustainable development, promising to cut poverty "
        "and protect natural resources.",
        "The government rejected the climate treaty, saying cutting greenhouse gas emissions would "
        "hurt the economy.",
    ],
    "crime": [
        "Masked protesters smashed shop windows, and police arrested dozens of anarchists after the "
        "riot.",
    ],
    "disaster": [
        "Aid agencies warn that millions of people face famine after the harvest failed and food "
        "ran out.",
    ],
    "business": [
        "Women remain rare in the boardroom, holding few of the top jobs at the country's biggest "
        "companies.",
    ],
}
