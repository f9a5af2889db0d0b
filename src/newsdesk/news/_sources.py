"""Turn what the user named (URLs, feed files, OPML, a TOML sources file) into ``Source`` objects.

Reads small local files only; fetching feeds is ``_fetch``'s job. Every mistake a user can make
here is a ``ConfigError`` with one line saying which file and what is wrong.
"""

from __future__ import annotations

import logging
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from newsdesk._exceptions import ConfigError
from newsdesk.news._models import Source

__all__ = ["resolve_sources", "load_sources_toml", "load_opml", "demo_sources", "DEMO_DIR"]

DEMO_DIR = Path(__file__).parent / "demo"
log = logging.getLogger("newsdesk.sources")
_TOML_KEYS = frozenset({"name", "url", "category", "timeout", "max_articles"})


def resolve_sources(specs: Iterable[str | Path | Source]) -> list[Source]:
    """Sources for each thing the user gave, in order; names are made unique.

    A spec is an http(s) URL, a ``file://`` URL or path to a feed file, an ``.opml`` file, a
    ``.toml`` sources file, or a ``Source`` (kept as it is).
    """
    sources: list[Source] = []
    for spec in specs:
        sources.extend([spec] if isinstance(spec, Source) else _resolve_one(spec))
    return _unique_names(sources)


def _resolve_one(spec: str | Path) -> list[Source]:
    if isinstance(spec, str):
        text = spec.strip()
        scheme = urlsplit(text).scheme.lower()
        if scheme in ("http", "https"):
            if not urlsplit(text).hostname:
                raise ConfigError(f"not a valid URL (no host): {text}")
            return [Source(name=_name_from_url(text), url=text)]
        if scheme == "file":
            path = Path(url2pathname(unquote(urlsplit(text).path)))
        elif len(scheme) > 1:  # one letter is a Windows drive ("C:\feeds\x.xml")
            raise ConfigError(f"unsupported source {text!r}: give an http(s) URL or a file path")
        else:
            path = Path(text).expanduser()
    else:
        path = spec.expanduser()

    if not path.exists():
        raise ConfigError(f"source not found: {path} is not a URL and no such file exists")
    if path.is_dir():
        raise ConfigError(f"source {path} is a directory; give a feed, OPML or TOML file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return load_sources_toml(path)
    if suffix == ".opml" or _sniff_opml(path):
        return load_opml(path)
    return [Source(name=path.stem, url=str(path.resolve()))]


def _name_from_url(url: str) -> str:
    host = (urlsplit(url).hostname or url).lower()
    return host.removeprefix("www.")


def _unique_names(sources: list[Source]) -> list[Source]:
    # Names key results and the store, so two sources from one host must not share one.
    seen: dict[str, int] = {}
    out: list[Source] = []
    for src in sources:
        count = seen.get(src.name, 0) + 1
        seen[src.name] = count
        out.append(src if count == 1 else src.model_copy(update={"name": f"{src.name} ({count})"}))
    return out


def _read_small(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


# --- TOML ------------------------------------------------------------------------------------


def load_sources_toml(path: str | Path) -> list[Source]:
    """Sources from ``[[source]]`` tables; relative ``url`` paths are taken from the file's folder.

    Each table: ``name``, ``url`` (required), ``category``, ``timeout`` (seconds),
    ``max_articles``. Unknown keys are errors, so a typo does not silently do nothing.
    """
    path = Path(path).expanduser()
    raw = _read_small(path, "sources file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    tables = doc.get("source")
    if tables is None:
        raise ConfigError(f"{path}: no [[source]] tables")
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: 'source' must be an array of tables: write [[source]]")
    sources = [_source_from_table(t, i, path) for i, t in enumerate(tables, start=1)]
    return _unique_names(sources)


def _source_from_table(table: Any, index: int, path: Path) -> Source:
    where = f"{path}: source #{index}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - _TOML_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_TOML_KEYS))}"
        )
    url = table.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: 'url' is required and must be a string")
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        default_name = _name_from_url(url)
    elif scheme == "file":
        default_name = Path(url2pathname(unquote(urlsplit(url).path))).stem
    elif len(scheme) > 1:
        raise ConfigError(f"{where}: unsupported URL scheme {scheme!r}")
    else:
        local = Path(url).expanduser()
        if not local.is_absolute():
            local = path.parent / local
        url = str(local.resolve())
        default_name = local.stem

    name = table.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    category = table.get("category")
    if category is not None and not isinstance(category, str):
        raise ConfigError(f"{where}: 'category' must be a string")
    timeout = table.get("timeout")
    # bool is an int subclass in Python; "timeout = true" is a mistake, not 1 second.
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ConfigError(f"{where}: 'timeout' must be a positive number of seconds")
    max_articles = table.get("max_articles")
    if max_articles is not None and (
        isinstance(max_articles, bool) or not isinstance(max_articles, int) or max_articles < 1
    ):
        raise ConfigError(f"{where}: 'max_articles' must be a positive integer")
    return Source(
        name=name.strip(),
        url=url,
        category=category,
        timeout=float(timeout) if timeout is not None else None,
        max_articles=max_articles,
    )


# --- OPML ------------------------------------------------------------------------------------


def _sniff_opml(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(1024).lower()
    except OSError:
        return False
    return b"<opml" in head


def load_opml(path: str | Path, *, warnings: list[str] | None = None) -> list[Source]:
    """Sources from every ``<outline xmlUrl=...>``; a parent outline's title becomes the category.

    An ``xmlUrl`` may be an http(s) URL, a ``file://`` URL or a path (relative paths are taken
    from the OPML file's folder). Any other scheme (``ftp:``, ``gopher:``...) skips that entry
    with a warning naming it: appended to ``warnings`` if given, else logged.
    """
    path = Path(path).expanduser()
    raw = _read_small(path, "OPML file")
    try:
        # The stdlib parser never fetches external entities, and expat caps entity expansion.
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else "?"
        raise ConfigError(f"{path}: invalid OPML: XML syntax error at line {line}") from None
    if root.tag.lower() != "opml":
        raise ConfigError(f"{path}: not an OPML file (root element is <{root.tag}>)")
    body = root.find("body")
    sources: list[Source] = []
    refused: list[str] = []
    if body is not None:
        _walk_outlines(body, None, sources, path, refused)
    for message in refused:
        if warnings is not None:
            warnings.append(message)
        else:
            log.warning("%s", message)
    if not sources:
        if refused:
            raise ConfigError(f"{path}: no usable feeds in the OPML file ({refused[0]})")
        raise ConfigError(f"{path}: OPML file has no outlines with an xmlUrl")
    return _unique_names(sources)


def _opml_url(xml_url: str, opml: Path) -> str | None:
    """The feed address an ``xmlUrl`` names, or None for a scheme newsdesk does not fetch."""
    scheme = urlsplit(xml_url).scheme.lower()
    if scheme in ("http", "https", "file"):
        return xml_url
    if len(scheme) > 1:
        return None
    local = Path(xml_url).expanduser()  # no scheme, or a Windows drive letter
    if not local.is_absolute():
        local = opml.parent / local  # the OPML's folder, not wherever newsdesk was started
    return str(local.resolve())


def _walk_outlines(
    node: ET.Element, category: str | None, out: list[Source], opml: Path, refused: list[str]
) -> None:
    for outline in node.findall("outline"):
        label = (outline.get("title") or outline.get("text") or "").strip()
        xml_url = (outline.get("xmlUrl") or "").strip()
        if xml_url:
            url = _opml_url(xml_url, opml)
            if url is None:
                scheme = urlsplit(xml_url).scheme.lower()
                refused.append(
                    f"{opml}: skipped {label or xml_url!r}: unsupported URL scheme {scheme!r} "
                    "(only http(s) URLs and local files)"
                )
            else:
                cat = (outline.get("category") or "").strip().split(",")[0].strip("/ ") or category
                name = label or (_name_from_url(url) if "://" in url else Path(url).stem)
                out.append(Source(name=name, url=url, category=cat or None))
        # Folders nest feeds; a folder's label is the natural category for what is inside.
        _walk_outlines(outline, label or category, out, opml, refused)


# --- demo ------------------------------------------------------------------------------------


def demo_sources() -> list[Source]:
    """The bundled fictional demo sources (see ``news/demo/sources.toml``)."""
    return load_sources_toml(DEMO_DIR / "sources.toml")
