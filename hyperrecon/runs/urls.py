"""``--storage`` values: which ledger they name, their common misspellings, the driver each needs, and secrets.

Accepted: a file path or ``journal:PATH`` (an Optuna journal file), ``file:///PATH`` (the same), and SQLAlchemy
database URLs ``postgresql[+driver]://``, ``mysql[+driver]://``, ``mariadb[+driver]://``, ``sqlite:///PATH``.
Aliases that mean one thing are accepted: ``postgres://`` (Heroku, libpq; SQLAlchemy 1.4 dropped it) and
``postgres+driver://`` are ``postgresql``; a plain ``postgresql://`` or ``mysql://`` takes the installed driver.
Near misses (``postgressql://``, ``postgresql:/host``, ``journal://x``, ``sqlite:/x``) get "did you mean"; a URL
whose driver is missing gets the package that provides it.

Secrets: a password in a URL is never shown. :func:`redact` (``user:***@host``) is for messages; :func:`public_url`
drops the password altogether for what is stored (``run.json``): the database client then finds it where libpq
and friends look (``PGPASSWORD``, ``~/.pgpass``), or ``--storage`` gives the full URL again.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from urllib.parse import unquote

from ..errors import ConfigError

# dialect -> (driver -> (module to import, package to install)); None: the dialect's default driver
DRIVERS: dict[str, dict[str | None, tuple[str, str]]] = {
    "postgresql": {
        "psycopg2": ("psycopg2", "psycopg2-binary (or: pip install 'hyperrecon[postgres]')"),
        "psycopg": ("psycopg", "'psycopg[binary]'"),
        "pg8000": ("pg8000", "pg8000"),
    },
    "mysql": {
        "mysqldb": ("MySQLdb", "mysqlclient"),
        "pymysql": ("pymysql", "pymysql"),
        "mysqlconnector": ("mysql.connector", "mysql-connector-python"),
    },
    "mariadb": {
        "mysqldb": ("MySQLdb", "mysqlclient"),
        "pymysql": ("pymysql", "pymysql"),
        "mariadbconnector": ("mariadb", "mariadb"),
    },
    "sqlite": {"pysqlite": ("sqlite3", "a Python built with sqlite3")},
}
ALIASES = {"postgres": "postgresql"}
NEAR = {
    "psql": "postgresql",
    "pgsql": "postgresql",
    "pg": "postgresql",
    "postgre": "postgresql",
    "postgresq": "postgresql",
    "maria": "mariadb",
    "sqlite3": "sqlite",
}  # said, never guessed
# Drivers a plain ``dialect://`` may use, in order of preference (SQLAlchemy's own default first).
DEFAULT_DRIVERS = {
    "postgresql": ("psycopg2", "psycopg", "pg8000"),
    "mysql": ("mysqldb", "pymysql", "mysqlconnector"),
    "mariadb": ("mysqldb", "pymysql", "mariadbconnector"),
    "sqlite": ("pysqlite",),
}
EXPECTED = "expected a file path, journal:PATH, postgresql://USER@HOST/DB, mysql://USER@HOST/DB or sqlite:///PATH"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+._-]*):(/*)(.*)$", re.S)
KNOWN = ("journal", "file", *DRIVERS)


def _credentials(url: str) -> tuple[str, str, str] | None:
    """(up to the user name, the password, from the host on) for ``scheme://user:password@host...``, also when
    the URL is misspelt (``postgresql//``, ``postgresql:/``); None without a password. The password may hold
    ``/``, ``?``, ``#`` or ``@`` when not %-encoded: the host starts after the last ``@``."""
    if "@" not in url:
        return None
    prefix = re.match(r"^[A-Za-z][A-Za-z0-9+._-]*:?/*", url)
    head = prefix.group(0) if prefix else ""
    creds, host = url[len(head) :].rsplit("@", 1)
    user, has, secret = creds.partition(":")
    return (f"{head}{user}", secret, host) if has else None


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages)."""
    parts = _credentials(url)
    return url if parts is None else f"{parts[0]}:***@{parts[2]}"


def public_url(url: str) -> str:
    """``url`` without its password (for files such as ``run.json``); the user name stays."""
    parts = _credentials(url)
    return url if parts is None else f"{parts[0]}@{parts[2]}"


def password(url: str) -> str | None:
    parts = _credentials(url)
    return None if parts is None else parts[1]


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) with the password of ``url`` replaced by ``***``, raw or %-decoded."""
    secret = password(url)
    if secret:
        for form in {secret, unquote(secret)}:
            if form:
                text = text.replace(form, "***")
    return text


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return close[0] if close else ""


def normalize(url: str) -> tuple[str, str]:
    """Classify ``url``: ``("journal", PATH)`` or ``("rdb", SQLALCHEMY_URL)`` with an installed driver.

    ``ConfigError`` (one line, password hidden) for a misspelt scheme, an unknown one, a driver that is not
    installed (naming the package), or a database URL without host/database.
    """
    shown = redact(url)
    slip = re.match(r"^(postgres(?:ql)?|mysql|mariadb|sqlite)(\+\w+)?//", url, re.I)
    if slip:  # "postgresql//host/db": the colon is missing
        name = slip.group(1) + (slip.group(2) or "")
        raise ConfigError(
            f"--storage {shown}: did you mean {redact(name + ':' + url[len(name) :])}? "
            "(a database URL has '://' after its scheme)"
        )
    m = _SCHEME.match(url)
    if m is None or len(m.group(1)) == 1:  # a plain path (or a Windows drive letter)
        return "journal", url
    scheme, slashes, rest = m.groups()
    dialect, plus, driver = scheme.lower().partition("+")
    if dialect == "journal":
        if slashes == "//":
            raise ConfigError(f"--storage {shown}: did you mean journal:{rest}? (journal:PATH, no '//')")
        return "journal", url[len("journal:") :]
    if dialect == "file":
        if slashes != "///" and not (slashes == "//" and rest.startswith("localhost/")):
            raise ConfigError(
                f"--storage {shown}: a file URL needs an absolute path, file:///PATH; or give the path itself"
            )
        return "journal", "/" + rest.removeprefix("localhost/")
    dialect = ALIASES.get(dialect, dialect)
    if dialect not in DRIVERS:
        guess = NEAR.get(dialect) or _did_you_mean(dialect, [*KNOWN, *ALIASES])
        guess = ALIASES.get(guess, guess)
        hint = f"did you mean {guess}://...? " if guess else ""
        if not slashes and not guess:  # "C:..."-like or a folder name with a colon: a path after all
            return "journal", url
        raise ConfigError(f"--storage {shown}: unknown scheme '{scheme}'; {hint}{EXPECTED}")
    if dialect == "sqlite":
        if slashes not in ("///", "////") or not rest:
            raise ConfigError(
                f"--storage {shown}: an SQLite ledger needs a file, sqlite:///PATH (three slashes; "
                "four for an absolute path); an in-memory database would forget the jobs"
            )
    elif slashes not in ("//", "///"):  # '///DB': the server's local socket
        raise ConfigError(
            f"--storage {shown}: did you mean {redact(f'{dialect}{plus}{driver}://{rest}')}? "
            "(a database URL has '://' after its scheme)"
        )
    elif not rest:
        raise ConfigError(f"--storage {shown}: nothing after '://'; expected {dialect}://USER@HOST[:PORT]/DATABASE")
    drivers = DRIVERS[dialect]
    if driver:
        if driver not in drivers:
            named = tuple(d for d in drivers if d is not None)  # None: the dialect's default driver
            guess = _did_you_mean(driver, named)
            hint = f"did you mean {dialect}+{guess}://...? " if guess else ""
            raise ConfigError(
                f"--storage {shown}: unknown driver '{driver}' for {dialect}; {hint}known: {', '.join(sorted(named))}"
            )
        module, package = drivers[driver]
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise ConfigError(
                f"--storage {shown}: {dialect}+{driver} needs the {module} driver, which is not "
                f"installed; pip install {package}"
            )
        return "rdb", f"{dialect}+{driver}:{slashes}{rest}"
    for candidate in DEFAULT_DRIVERS[dialect]:
        module, _ = drivers[candidate]
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            if dialect == "sqlite":
                return "rdb", f"sqlite:{slashes}{rest}"
            return "rdb", f"{dialect}+{candidate}:{slashes}{rest}"
    first = DEFAULT_DRIVERS[dialect][0]
    others = " or ".join(f"{dialect}+{d}:// with pip install {drivers[d][1]}" for d in DEFAULT_DRIVERS[dialect][1:])
    raise ConfigError(
        f"--storage {shown}: {dialect}:// needs a database driver and none is installed; pip install "
        f"{drivers[first][1]} (or use {others})"
    )
