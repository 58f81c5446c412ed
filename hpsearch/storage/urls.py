"""Storage URLs: the default, the environment variable, normalising, and masking secrets."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote_plus

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trainer.errors import UserError

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"


def resolve_storage_url(flag: str | None) -> str:
    """``--storage`` if given, else ``$HPSEARCH_STORAGE``, else ``sqlite:///hpsearch.db``."""
    return flag or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


#: Connection settings whose values are secrets: libpq marks ``password``, ``sslpassword``
#: and ``oauth_client_secret`` as such, ``scram_client_key`` and ``scram_server_key`` stand
#: in for the password, and ``passwd``/``pwd`` are other drivers' spellings. Any key that
#: holds one of :data:`_SECRET_WORDS` is masked too (a misspelt ``pasword=`` included).
SECRET_KEYS = frozenset(
    {
        "password",
        "sslpassword",
        "oauth_client_secret",
        "scram_client_key",
        "scram_server_key",
        "passwd",
        "pwd",
    }
)
_SECRET_WORDS = ("pass", "pasw", "pwd", "secret", "token", "scram")
#: Keys that name a file, not a secret: shown (the file's content never is in the URL).
_PATH_KEYS = frozenset({"passfile"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: ``key=value`` outside a URL (a libpq connection string, a message): the value runs to
#: the next blank, or is quoted.
_CONNINFO_PAIR = re.compile(r"(?P<key>[A-Za-z_%][\w%]*)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|\S+)")
#: Trailing punctuation of a URL quoted in a message: not part of the URL.
_TRAILING = ":,;.)]'\""
Span = tuple[int, int]


def redact(url: str) -> str:
    """``url`` with every secret it can carry replaced by ``***``, for anything shown,
    logged or stored.

    Masked: the password of ``user:password@`` (also when it holds a raw ``@``, ``/`` or
    ``?``, and whether or not SQLAlchemy can parse the URL), and the value of every query
    key that carries a secret (:data:`SECRET_KEYS`, any key holding "pass", "pasw",
    "pwd", "secret", "token" or "scram", percent-encoded keys included), as well as any
    value holding PEM key material. The same goes for ``key=value`` pairs of a libpq
    connection string, and for each URL in a text that holds several. ``passfile`` and
    ``sslkey`` are paths to files, not secrets: they are shown.
    """
    return _replace(url, _secret_spans(url))


def redact_text(text: str) -> str:
    """A message with the secrets of every URL and ``key=value`` setting in it masked.

    Unlike :func:`redact`, a URL ends at a blank (the words after it are the message's),
    and values already shown as ``***`` are left as they are.
    """
    parts = re.split(r"(\s+)", text)
    for i, part in enumerate(parts):
        if "://" in part:
            core = part.rstrip(_TRAILING)
            parts[i] = redact(core) + part[len(core) :]
    joined = "".join(parts)
    spans = [span for span in _conninfo_spans(joined) if not joined.startswith("***", span[0])]
    return _replace(joined, spans)


def secret_values(url: str) -> list[str]:
    """The secrets :func:`redact` masks in ``url``, as written and percent-decoded, longest
    first: to take them out of a message that quotes them in another form."""
    values: set[str] = set()
    for start, stop in _secret_spans(url):
        raw = url[start:stop].strip("'")
        values.update({raw, _decoded(raw), *raw.split("@"), *_decoded(raw).split("@")})
    return sorted((v for v in values if len(v) >= 3), key=len, reverse=True)


def _replace(text: str, spans: list[Span]) -> str:
    for start, stop in sorted(spans, reverse=True):
        text = f"{text[:start]}***{text[stop:]}"
    return text


def _secret_spans(url: str) -> list[Span]:
    starts = [m.start() for m in _SCHEME.finditer(url)]
    if not starts:
        return _conninfo_spans(url)
    spans = _conninfo_spans(url[: starts[0]])
    for start, stop in zip(starts, [*starts[1:], len(url)], strict=True):
        spans += [(start + a, start + b) for a, b in _url_spans(url[start:stop])]
    return spans


def _url_spans(url: str) -> list[Span]:
    """The secrets of one URL: the password of its user part, the secret query values."""
    spans: list[Span] = []
    head = url.index("://") + 3
    query_from = head
    colon = url.find(":", head)
    at = url.find("@", colon) if colon >= 0 and "/" not in url[head:colon] else -1
    if at >= 0:
        # The user part ends at the last '@' before the query: a raw '@' in the password
        # (which SQLAlchemy would take for the host's start) stays in the masked part.
        query = url.find("?", at)
        end = url.rfind("@", at, query if query >= 0 else len(url))
        if end > colon + 1:
            spans.append((colon + 1, end))
        query_from = end + 1
    query = url.find("?", query_from)
    if query >= 0:
        spans += _query_spans(url, query + 1)
    return spans


def _query_spans(url: str, start: int) -> list[Span]:
    """Secret values of ``key=value&...`` from ``start``; a raw ``&`` inside a value (the
    next piece has no ``=``) stays with that value."""
    pairs: list[Span] = []
    pos = start
    for chunk in url[start:].split("&"):
        if pairs and "=" not in chunk:
            pairs[-1] = (pairs[-1][0], pos + len(chunk))
        else:
            pairs.append((pos, pos + len(chunk)))
        pos += len(chunk) + 1
    spans = []
    for a, b in pairs:
        key, eq, value = url[a:b].partition("=")
        if eq and value and (_is_secret_key(key) or _is_key_material(value)):
            spans.append((a + len(key) + 1, b))
    return spans


def _conninfo_spans(text: str) -> list[Span]:
    return [
        match.span("value")
        for match in _CONNINFO_PAIR.finditer(text)
        if _is_secret_key(match.group("key")) or _is_key_material(match.group("value"))
    ]


def _decoded(text: str) -> str:
    """Percent-decoding until nothing changes (a twice-encoded key is still that key)."""
    for _ in range(4):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def _is_secret_key(key: str) -> bool:
    name = _decoded(key).strip().lower()
    if name in _PATH_KEYS:
        return False
    return name in SECRET_KEYS or any(word in name for word in _SECRET_WORDS)


def _is_key_material(value: str) -> bool:
    text = _decoded(value)
    return "-----BEGIN" in text or "PRIVATE KEY" in text


def normalize_url(url: str) -> str:
    """Map ``postgresql://``/``postgres://`` onto the psycopg 3 driver and check the URL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(
            f"malformed storage URL {redact(url)!r}: expected e.g. sqlite:///hpsearch.db "
            "or postgresql://user@host:5432/dbname"
        ) from None
    if _raw_at_in_password(url):
        raise UserError(
            f"storage URL {redact(url)!r}: its password holds a raw '@', which would end it "
            "there (the rest taken for the host); write each '@' of the password as %40"
        )
    backend = parsed.get_backend_name()
    if backend == "sqlite" and _in_memory(parsed.database):
        raise UserError(
            f"storage {redact(url)!r} is in memory: worker processes cannot share it; "
            "give a file, e.g. sqlite:///hpsearch.db"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise UserError(f"unsupported storage {redact(url)!r}: use sqlite:/// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def _raw_at_in_password(url: str) -> bool:
    """True when ``user:password@`` has a raw '@' in the password: hosts hold no '@', so
    one between the first '@' and the path or query means SQLAlchemy would cut the
    password short and connect to a host made of its tail."""
    match = _SCHEME.match(url)
    if match is None:
        return False
    head = match.end()
    colon = url.find(":", head)
    if colon < 0 or "/" in url[head:colon]:
        return False
    at = url.find("@", colon)
    if at < 0:
        return False
    stops = [i for i in (url.find("/", at), url.find("?", at)) if i >= 0]
    return "@" in url[at + 1 : min(stops, default=len(url))]


def _in_memory(database: str | None) -> bool:
    return (
        not database
        or database == ":memory:"
        or "mode=memory" in database
        or (database.startswith("file::memory:"))
    )
