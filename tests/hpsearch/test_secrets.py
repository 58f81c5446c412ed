"""Every secret a storage URL can carry stays out of what hpsearch shows, logs and writes.

A PostgreSQL URL holds secrets in the user part (``user:password@``) and in its query
(``password=``, ``sslpassword=``, ``oauth_client_secret=``, ``scram_client_key=``,
``scram_server_key=``), in any scheme spelling and percent-encoded. The end-to-end test
runs real ``hpsearch run`` commands (stand-in trainer, wandb offline) on URLs carrying each
of them, then searches the terminal output, every row of the storage, every file of the
workdir (wandb's offline runs, binary included) and the report for the secrets.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from hpsearch.storage import normalize_url, open_storage, redact, redact_text, secret_values
from tests.hpsearch.conftest import PG_URL, fake_env, run_cli
from tests.hpsearch.study_checks import random_study, require_postgres
from trainer.errors import UserError

# -- redact, form by form ---------------------------------------------------------------------

#: (URL, what it must show, the secret pieces it must not show)
FORMS = {
    "user part": ("postgresql://al:Sx1pw@h/db", "postgresql://al:***@h/db", ["Sx1pw"]),
    "user part, escaped": ("postgresql://al:Sx2%40pw%2F@h/db", "al:***@h/db", ["Sx2"]),
    "user part, raw @": ("postgresql://al:Sx3a@Sx3b@h/db", "al:***@h/db", ["Sx3a", "Sx3b"]),
    "user part, raw / and ?": ("postgres://al:Sx4a/Sx4b?c@h/db", "al:***@h/db", ["Sx4a", "Sx4b"]),
    "password=": ("postgresql://al@h/db?password=Sx5", "?password=***", ["Sx5"]),
    "postgres:// password=": ("postgres://h/db?password=Sx6&sslmode=require", "", ["Sx6"]),
    "psycopg driver password=": ("postgresql+psycopg://h/db?password=Sx7", "", ["Sx7"]),
    "sslpassword=": ("postgresql://h/db?sslpassword=Sx8&sslmode=require", "sslmode=", ["Sx8"]),
    "oauth_client_secret=": ("postgresql://h/db?oauth_client_secret=Sx9", "", ["Sx9"]),
    "scram keys": (
        "postgresql://h/db?scram_client_key=Sx10a%3D&scram_server_key=Sx10b",
        "scram_client_key=***&scram_server_key=***",
        ["Sx10a", "Sx10b"],
    ),
    "escaped key": ("postgresql://h/db?pass%77ord=Sx11", "pass%77ord=***", ["Sx11"]),
    "twice-escaped key": ("postgresql://h/db?pass%2577ord=Sx12", "", ["Sx12"]),
    "raw & in the value": ("postgresql://h/db?password=Sx13a&Sx13b&x=1", "&x=1", ["Sx13"]),
    "repeated key": ("postgresql://h/db?password=Sx14a&password=Sx14b", "", ["Sx14"]),
    "misspelt key": ("postgresql://h/db?pasword=Sx15", "", ["Sx15"]),
    "MySQL-style passwd=": ("postgresql://h/db?passwd=Sx16", "", ["Sx16"]),
    "unparseable (bad port)": ("postgresql://al:Sx17@h:port/db", "al:***@h:port/db", ["Sx17"]),
    "unparseable (two ?)": ("postgresql://h/db??password=Sx18", "", ["Sx18"]),
    "connection string": ("host=h password=Sx19 dbname=db", "host=h password=*** dbname=db", []),
    "quoted connection string": ("host=h password='Sx20 a' dbname=db", "dbname=db", ["Sx20"]),
    "key material": ("postgresql://h/db?sslkey=-----BEGIN%20PRIVATE%20KEY-----Sx21", "", ["Sx21"]),
    "in a longer text": ("--storage=postgresql://al:Sx22@h/db?x=1", "--storage=", ["Sx22"]),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_redact_masks_every_secret_form(form: str) -> None:
    url, shown, secrets = FORMS[form]
    masked = redact(url)
    for secret in [*secrets, "Sx19"]:
        assert secret not in masked, masked
    assert shown in masked and "***" in masked
    assert redact(masked) == masked  # masking again changes nothing


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://al@h:5432/db?sslmode=require&connect_timeout=5",
        "postgresql://h/db?passfile=/home/al/.pgpass&sslkey=/home/al/key.pem",
        "sqlite:///runs/study.db",
        "sqlite:///a/b:c@d.db",
        "not a url",
    ],
)
def test_redact_keeps_what_is_not_secret(url: str) -> None:
    # paths to files (passfile, sslkey) are not secrets: the user sees which file is meant
    assert redact(url) == url


def test_redact_text_masks_what_a_message_still_shows_and_keeps_its_words() -> None:
    already = 'cannot open storage postgresql://h/db?password=***&x=1: invalid option "y"'
    assert redact_text(already) == already
    assert (
        redact_text("to postgresql://al:Sx30@h/db: refused")
        == "to postgresql://al:***@h/db: refused"
    )
    assert redact_text("conninfo host=h password=Sx31 dbname=d") == (
        "conninfo host=h password=*** dbname=d"
    )


def test_secret_values_are_given_in_every_form() -> None:
    values = secret_values("postgresql://al:Sx32%40pw@h/db?password=Sx33&sslmode=require")
    assert {"Sx32%40pw", "Sx32@pw", "Sx32", "Sx33"} <= set(values)
    assert "require" not in values and "al" not in values


def test_a_raw_at_in_the_password_is_refused_without_showing_it() -> None:
    # SQLAlchemy would take "Sx34b@127.0.0.1" for the host, and the driver quote it
    with pytest.raises(UserError, match="write each '@' of the password as %40") as error:
        normalize_url("postgresql://al:Sx34a@Sx34b@127.0.0.1:5432/db")
    assert "Sx34" not in str(error.value)
    # a user name may hold '@' (user@server): that URL is fine
    normalize_url("postgresql://al@example.org:pw@h/db")
    assert redact("postgresql://al@example.org:Sx35@h/db") == "postgresql://al@example.org:***@h/db"


def test_a_query_value_sqlalchemy_reads_late_is_one_line() -> None:
    # ?port=x passes make_url and fails in create_engine: once a traceback
    with pytest.raises(UserError, match="non-integer port") as error:
        open_storage("postgresql://al@127.0.0.1:1/db?port=x&password=Sx36")
    assert "Sx36" not in str(error.value)


# -- a real run on URLs carrying every secret ----------------------------------------------


def _scram_key(tag: bytes) -> str:
    """A SCRAM key libpq accepts (32 bytes, base64) whose text starts with a known piece."""
    return base64.b64encode(tag.ljust(32, b"!")).decode()


USER_PART = "Pq7userpart@Pq7tail/x"  # raw @ and / inside: percent-encoded in the URL
QUERY_PASSWORD = "Pq7query"
SSL_PASSWORD = "Pq7sslpw"
OAUTH_SECRET = "Pq7oauth"
SCRAM_CLIENT = _scram_key(b"Pq7scramclient")
SCRAM_SERVER = _scram_key(b"Pq7scramserver")
ESCAPED_KEY = "Pq7escaped&Pq7amp=x"  # given under the key pass%77ord, the value escaped too

#: What must appear nowhere: every secret, each distinctive piece of it, and the
#: percent-encoded forms.
NEEDLES = sorted(
    {
        *(USER_PART, QUERY_PASSWORD, SSL_PASSWORD, OAUTH_SECRET, ESCAPED_KEY),
        *(SCRAM_CLIENT, SCRAM_SERVER, SCRAM_CLIENT[:16], SCRAM_SERVER[:16]),
        *(quote(USER_PART, safe=""), quote(ESCAPED_KEY, safe=""), quote(SCRAM_CLIENT, safe="")),
        "Pq7userpart",
        "Pq7tail",
        "Pq7escaped",
        "Pq7amp",
    }
)


@pytest.fixture
def secret_db() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database, dropped afterwards: (host part of its URL, its name)."""
    require_postgres()
    import psycopg

    name = f"hpsearch_secrets_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PG_URL.split("://", 1)[1].split("@", 1)[1].rsplit("/", 1)[0], name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _urls(host: str, db: str, tmp_path: Path) -> dict[str, str]:
    def enc(text: str) -> str:
        return quote(text, safe="")

    return {
        # user:password@, sslpassword, oauth_client_secret; passfile is a path, shown
        "userinfo": f"postgresql://postgres:{enc(USER_PART)}@{host}/{db}"
        f"?sslpassword={SSL_PASSWORD}&oauth_client_secret={OAUTH_SECRET}"
        f"&passfile={tmp_path / 'no-pgpass'}",
        # postgres://, password= and both SCRAM keys
        "query": f"postgres://postgres@{host}/{db}?password={QUERY_PASSWORD}"
        f"&scram_client_key={enc(SCRAM_CLIENT)}&scram_server_key={enc(SCRAM_SERVER)}",
        # the driver spelled out, a percent-encoded key and value; given in $HPSEARCH_STORAGE
        "escaped": f"postgresql+psycopg://postgres@{host}/{db}"
        f"?pass%77ord={enc(ESCAPED_KEY)}&connect_timeout=10",
    }


def _storage_text(url: str) -> str:
    """Every row of every table of the database, as text."""
    import psycopg

    rows = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        for (table,) in tables:
            query = f'SELECT row_to_json(t)::text FROM "{table}" t'
            rows += [f"{table}: {row}" for (row,) in conn.execute(query)]
    return "\n".join(rows)


def _files_holding(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n}" for n in needles if n.encode() in data]
    return found


@pytest.mark.postgres
@pytest.mark.slow
def test_no_secret_of_the_storage_url_is_shown_logged_or_stored(
    tmp_path: Path, secret_db: tuple[str, str]
) -> None:
    host, db = secret_db
    urls = _urls(host, db, tmp_path)
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0", WANDB_SILENT="true")
    env.pop("HPSEARCH_STORAGE", None)
    env["BROWSER_PATH"] = str(tmp_path / "no-browser")  # report: skip the PNG figures
    study_file = random_study(tmp_path, 4, epochs=2)
    work = tmp_path / "work"

    def run(name: str, *extra: str) -> list[str]:
        return [
            "run",
            *("--study", str(study_file), "--name", name, *extra),
            *("--data", str(tmp_path), "--workdir", str(work), "--wandb", "offline"),
            *("--n-trials", "1", "--workers", "1"),
        ]

    results = [
        run_cli(run("s-userinfo", "--storage", urls["userinfo"]), env),
        # a warm start names its source storage in the study's attributes
        run_cli(
            run(
                "s-query",
                *("--storage", urls["query"], "--from-study", "s-userinfo"),
                *("--from-storage", urls["userinfo"]),
            ),
            env,
        ),
        run_cli(run("s-escaped"), {**env, "HPSEARCH_STORAGE": urls["escaped"]}),
    ]
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = tmp_path / "report"
    for command in (
        ["status", "--storage", urls["query"], "--study", "s-query"],
        ["status", "--storage", urls["userinfo"], "--json"],
        ["best", "--storage", urls["escaped"], "--study", "s-escaped", "--workdir", str(work)],
        ["report", "--storage", urls["userinfo"], "--study", "s-query", "--out", str(report)],
    ):
        results.append(run_cli(command, env))
        assert results[-1].returncode == 0, results[-1].stderr[-3000:]

    # the terminal: the URLs are shown, masked
    printed = "".join(r.stdout + r.stderr for r in results)
    assert [n for n in NEEDLES if n in printed] == []
    assert "postgres:***@" in printed and "sslpassword=***" in printed
    assert "scram_client_key=***" in printed and "pass%77ord=***" in printed
    assert str(tmp_path / "no-pgpass") in printed  # a path, not a secret
    # the storage: every row of every table (studies, trials, their attributes, claims)
    stored = _storage_text(f"postgresql://postgres@{host}/{db}")
    assert "copied" in stored or "s-userinfo" in stored  # the warm start's source is recorded
    assert [n for n in NEEDLES if n in stored] == []
    # the files: the workdir (checkpoints, wandb's offline runs and logs), the report
    assert list((work / "wandb").rglob("*.wandb")), "no offline wandb run was written"
    assert _files_holding(tmp_path, NEEDLES) == []
    # wandb did record the command line (in its offline run files), masked
    recorded = b"".join(p.read_bytes() for p in (work / "wandb").rglob("*.wandb"))
    assert b"--storage" in recorded and b"?password=***&scram_client_key=***" in recorded
