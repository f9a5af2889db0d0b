from __future__ import annotations

import pytest

from newsdesk.news._normalize import (
    article_id,
    canonical_url,
    content_hash,
    guess_language,
    html_to_text,
    normalize_text,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Example.COM/Story?b=2&a=1#comments", "https://example.com/Story?a=1&b=2"),
        (
            "https://example.com/a?utm_source=rss&utm_medium=feed&id=7&fbclid=xyz&gclid=1&mc_cid=2&mc_eid=3&ref=home&_ga=4",
            "https://example.com/a?id=7",
        ),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com/x?UTM_Campaign=y", "https://example.com/x"),
        ("https://example.com/x?q=", "https://example.com/x?q="),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_keeps_path_case_and_non_urls() -> None:
    # Paths are case-sensitive on most servers; only scheme and host are folded.
    assert canonical_url("https://EX.com/CaseSensitive") == "https://ex.com/CaseSensitive"
    assert canonical_url("  /tmp/feed.xml  ") == "/tmp/feed.xml"
    assert canonical_url("urn:uuid:1234") == "urn:uuid:1234"


def test_canonical_url_equal_for_same_page() -> None:
    a = canonical_url("https://News.example/p/1?utm_source=twitter&page=2#top")
    b = canonical_url("https://news.example/p/1?page=2&fbclid=abc")
    assert a == b


def test_html_to_text_drops_scripts_styles_iframes() -> None:
    html = (
        "<div>Hello <script>alert('x')</script><b>world</b>"
        "<style>p{color:red}</style><iframe src='https://evil.test'>inside frame</iframe>"
        "<img src=x onerror=alert(1)>!</div>"
    )
    text = html_to_text(html)
    assert text == "Hello world!"
    assert "alert" not in text and "color" not in text and "inside frame" not in text


def test_html_to_text_unescapes_and_collapses_whitespace() -> None:
    assert (
        html_to_text("<p>Fish &amp; chips</p>\n\n<p>caf&eacute;&nbsp;  &#8212; ok</p>")
        == "Fish & chips café — ok"
    )


def test_html_to_text_separates_block_elements() -> None:
    assert html_to_text("<p>one</p><p>two</p><br>three<li>four</li>") == "one two three four"


def test_html_to_text_unclosed_script_drops_rest() -> None:
    # An unclosed <script> must not leak its code into the text.
    assert html_to_text("safe <script>var stolen = document.cookie") == "safe"


def test_html_to_text_self_closed_script_does_not_swallow_text() -> None:
    assert html_to_text("a<script/>b<br/>c") == "ab c"


def test_html_to_text_plain_and_empty() -> None:
    assert html_to_text(None) == ""
    assert html_to_text("") == ""
    assert html_to_text("  plain   text\twith\nspaces ") == "plain text with spaces"
    assert html_to_text("5 < 6 and 7 > 3") == "5 < 6 and 7 > 3"


def test_html_to_text_strips_control_characters() -> None:
    assert html_to_text("a\x00b\x07c") == "abc"


def test_normalize_and_content_hash() -> None:
    assert normalize_text("Hello, WORLD!  It's  ok.") == "hello world it s ok"
    h1 = content_hash("Title", "<b>not html here</b>, just text")
    h2 = content_hash("  title ", "<b>not html here</b> just TEXT")
    assert h1 == h2
    assert len(h1) == 64
    assert content_hash("Title", "other text") != h1


def test_article_id_prefers_global_guid_then_url() -> None:
    by_guid = article_id(source="a", guid="https://ex.com/p/1", url="https://ex.com/other")
    assert by_guid == article_id(source="b", guid="https://EX.com/p/1#x", url=None)
    by_url = article_id(source="a", guid=None, url="https://ex.com/p/2?utm_source=x")
    assert by_url == article_id(source="b", guid=None, url="https://ex.com/p/2")
    assert by_guid != by_url
    assert len(by_url) == 24


def test_article_id_local_guid_is_scoped_by_source() -> None:
    # Feeds that number items 1, 2, 3 must not collide with each other.
    a = article_id(source="feed-a", guid="1")
    b = article_id(source="feed-b", guid="1")
    assert a != b
    assert a == article_id(source="feed-a", guid=" 1 ")


def test_article_id_falls_back_to_title() -> None:
    assert article_id(source="s", title="Hello World") == article_id(
        source="s", title="hello, world"
    )
    assert article_id(source="s", title="Hello") != article_id(source="s", title="Bye")


def test_guess_language() -> None:
    assert guess_language("Городской совет утвердил новый бюджет") == "ru"
    assert guess_language("The council approved the budget") == "en"
    assert guess_language("Le conseil a approuvé le budget", declared="fr-FR") == "fr"
    # A Cyrillic-script declaration wins over the generic "ru"...
    assert guess_language("Міська рада затвердила бюджет", declared="uk") == "uk"
    # ...but not over plainly Latin text.
    assert guess_language("The council approved the budget on Monday night", declared="ru") == "en"
    # Russian text in a feed labelled English is still Russian.
    assert guess_language("Городской совет утвердил новый бюджет", declared="en") == "ru"
    assert guess_language("", declared="de") == "de"
    assert guess_language("") == "en"
