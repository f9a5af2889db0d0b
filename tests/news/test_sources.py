from __future__ import annotations

from pathlib import Path

import pytest

from newsdesk._exceptions import ConfigError
from newsdesk.news._sources import (
    DEMO_DIR,
    demo_sources,
    load_opml,
    load_sources_toml,
    resolve_sources,
)

OPML = """<?xml version="1.0" encoding="utf-8"?>
<opml version="2.0">
  <head><title>My feeds</title></head>
  <body>
    <outline text="Tech" title="Tech">
      <outline type="rss" text="Wire" title="Tech Wire" xmlUrl="https://wire.test/rss" htmlUrl="https://wire.test/"/>
      <outline type="rss" text="Other" xmlUrl="https://other.test/atom"/>
    </outline>
    <outline type="rss" text="Top level" xmlUrl="https://top.test/feed" category="/World/Europe"/>
    <outline text="no feed url here"/>
  </body>
</opml>
"""


def test_urls_become_sources_named_by_host() -> None:
    sources = resolve_sources(["https://www.News.test/rss", "http://blog.test/feed.xml"])
    assert [(s.name, s.url) for s in sources] == [
        ("news.test", "https://www.News.test/rss"),
        ("blog.test", "http://blog.test/feed.xml"),
    ]


def test_same_host_twice_gets_unique_names() -> None:
    sources = resolve_sources(["https://a.test/one", "https://a.test/two"])
    assert [s.name for s in sources] == ["a.test", "a.test (2)"]


def test_local_feed_file_path_and_file_url(tmp_path: Path) -> None:
    feed = tmp_path / "local feed.xml"
    feed.write_text("<rss/>")
    by_path, by_str, by_url = resolve_sources([feed, str(feed), feed.as_uri()])
    assert by_path.url == str(feed.resolve())
    assert by_path.name == "local feed"
    assert by_str.url == by_path.url
    assert Path(by_url.url) == feed.resolve()


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="source not found: .*nope.xml"):
        resolve_sources([str(tmp_path / "nope.xml")])


def test_directory_and_bad_scheme_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_sources([tmp_path])
    with pytest.raises(ConfigError, match="unsupported source"):
        resolve_sources(["ftp://files.test/feed.xml"])
    with pytest.raises(ConfigError, match="no host"):
        resolve_sources(["https:///feed"])


def test_opml(tmp_path: Path) -> None:
    path = tmp_path / "subs.opml"
    path.write_text(OPML)
    sources = load_opml(path)
    assert [(s.name, s.url, s.category) for s in sources] == [
        ("Tech Wire", "https://wire.test/rss", "Tech"),
        ("Other", "https://other.test/atom", "Tech"),
        ("Top level", "https://top.test/feed", "World/Europe"),
    ]
    # resolve_sources sniffs OPML even without the .opml suffix.
    other = tmp_path / "subs.xml"
    other.write_text(OPML)
    assert resolve_sources([other]) == sources


def test_bad_opml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.opml"
    broken.write_text("<opml><body><outline xmlUrl='x'></body>")
    with pytest.raises(ConfigError, match="invalid OPML: XML syntax error at line 1"):
        load_opml(broken)
    empty = tmp_path / "empty.opml"
    empty.write_text("<opml><body><outline text='folder'/></body></opml>")
    with pytest.raises(ConfigError, match="no outlines with an xmlUrl"):
        load_opml(empty)
    not_opml = tmp_path / "x.opml"
    not_opml.write_text("<rss/>")
    with pytest.raises(ConfigError, match="not an OPML file"):
        load_opml(not_opml)


def test_toml_sources_with_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "a.xml").write_text("<rss/>")
    toml = tmp_path / "sources.toml"
    toml.write_text(
        """
[[source]]
name = "Local A"
url = "feeds/a.xml"
category = "local"
timeout = 5
max_articles = 10

[[source]]
url = "https://remote.test/rss"
"""
    )
    a, remote = resolve_sources([toml])
    assert a.name == "Local A"
    assert a.url == str((tmp_path / "feeds" / "a.xml").resolve())
    assert (a.category, a.timeout, a.max_articles) == ("local", 5.0, 10)
    assert (remote.name, remote.url, remote.category, remote.timeout) == (
        "remote.test",
        "https://remote.test/rss",
        None,
        None,
    )


def test_toml_relative_to_file_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "sources.toml").write_text('[[source]]\nname = "x"\nurl = "x.xml"\n')
    monkeypatch.chdir(tmp_path)
    (src,) = load_sources_toml("conf/sources.toml")
    assert src.url == str((sub / "x.xml").resolve())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[source]\nname = 1", "invalid TOML"),
        ('title = "no sources"', r"no \[\[source\]\] tables"),
        ('[source]\nurl = "https://a.test"', "must be an array of tables"),
        ('[[source]]\nname = "x"', "'url' is required"),
        ('[[source]]\nurl = "https://a.test"\nurll = "typo"', "unknown key.*urll"),
        ('[[source]]\nurl = "https://a.test"\ntimeout = -1', "'timeout' must be a positive number"),
        (
            '[[source]]\nurl = "https://a.test"\ntimeout = true',
            "'timeout' must be a positive number",
        ),
        (
            '[[source]]\nurl = "https://a.test"\nmax_articles = 2.5',
            "'max_articles' must be a positive integer",
        ),
        ('[[source]]\nurl = "https://a.test"\ncategory = 3', "'category' must be a string"),
        ('[[source]]\nurl = "gopher://a.test"', "unsupported URL scheme"),
        ('[[source]]\nurl = "https://a.test"\nname = ""', "'name' must be a non-empty string"),
    ],
)
def test_toml_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_sources_toml(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_toml_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sources file not found"):
        load_sources_toml(tmp_path / "missing.toml")


def test_demo_sources() -> None:
    sources = demo_sources()
    assert len(sources) >= 5
    assert len({s.name for s in sources}) == len(sources)
    for s in sources:
        path = Path(s.url)
        assert path.is_absolute() and path.parent == DEMO_DIR.resolve()
        assert path.exists(), s.url
