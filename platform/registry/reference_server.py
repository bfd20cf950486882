"""A reference population registry: the protocol of README.md served from a SQLite dataset.

The real National Population Database cannot be reached from development machines, test runs
or demos, so this small service stands in for it with the very same protocol. It is its own
WSGI application (not the platform's) and reads its own dataset file, which
``write_dataset`` creates (the demo-data generator calls it with citizens that match the demo
people, and some that deliberately do not).
"""

from __future__ import annotations

import csv
import hmac
import logging
import os
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from kyso.platform.models.records import Gender
from kyso.platform.registry.protocol import (
    API_VERSION,
    HEALTH_PATH,
    LOOKUP_PATH,
    MAX_BATCH,
    MAX_BODY_BYTES,
    ProtocolViolation,
    RegistryCitizen,
    error_body,
    is_identity_number,
    parse_lookup_request,
)

log = logging.getLogger(__name__)

# A citizen of the reference dataset is exactly what the registry answers about them.
Citizen = RegistryCitizen

DATASET_FORMAT = "kyso-reference-registry/1"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE citizens (
    identity_number TEXT PRIMARY KEY CHECK (length(identity_number) = 12),
    full_name TEXT NOT NULL CHECK (full_name <> ''),
    birth_date TEXT NOT NULL,
    gender TEXT NOT NULL CHECK (gender IN ('male', 'female'))
) WITHOUT ROWID;
"""


class DatasetError(ValueError):
    """The dataset (or the citizens meant for it) is not usable."""


def _checked(citizen: RegistryCitizen, seen: set[str]) -> tuple[str, str, str, str]:
    number = citizen.identity_number
    if not is_identity_number(number):
        raise DatasetError(f"identity number {number!r} is not 12 digits")
    if number in seen:
        raise DatasetError(f"identity number {number} appears twice")
    seen.add(number)
    if not citizen.full_name.strip():
        raise DatasetError(f"citizen {number} has no name")
    if not isinstance(citizen.birth_date, date) or isinstance(citizen.birth_date, datetime):
        raise DatasetError(f"citizen {number}: birth_date must be a date")
    try:
        gender = Gender(citizen.gender).value
    except ValueError as exc:
        raise DatasetError(f"citizen {number}: gender must be male or female") from exc
    return number, citizen.full_name.strip(), citizen.birth_date.isoformat(), gender


def write_dataset(path: Path, citizens: Iterable[Citizen]) -> None:
    """Create (or replace) the dataset at ``path`` with exactly these citizens.

    Written to a temporary file and renamed into place, so a running service sees either the
    old dataset or the new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        seen: set[str] = set()
        with closing(sqlite3.connect(temporary)) as conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT INTO meta VALUES ('format', ?)", (DATASET_FORMAT,))
            conn.executemany(
                "INSERT INTO citizens VALUES (?, ?, ?, ?)",
                (_checked(citizen, seen) for citizen in citizens),
            )
            conn.commit()
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def dataset_size(path: Path) -> int:
    """The number of citizens in a dataset; raises DatasetError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset (create it with write_dataset)")
    try:
        with closing(_connect(path)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None or row[0] != DATASET_FORMAT:
                raise DatasetError(f"{path}: not a {DATASET_FORMAT} dataset")
            count: int = conn.execute("SELECT count(*) FROM citizens").fetchone()[0]
            return count
    except sqlite3.DatabaseError as exc:
        raise DatasetError(f"{path}: not a reference registry dataset ({exc})") from exc


def read_citizens_csv(path: Path) -> Iterator[Citizen]:
    """Citizens from a CSV file with the columns identity_number, full_name, birth_date, gender.

    Dates may be written 1990-05-17 or 17/05/1990; gender male/female or Nam/Nữ.
    """
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"identity_number", "full_name", "birth_date", "gender"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise DatasetError(f"{path}: the header must name the columns {sorted(needed)}")
        for row in reader:
            line = reader.line_num
            try:
                yield Citizen(
                    identity_number=row["identity_number"].strip(),
                    full_name=" ".join(row["full_name"].split()),
                    birth_date=_csv_date(row["birth_date"].strip()),
                    gender=_csv_gender(row["gender"].strip()),
                )
            except ValueError as exc:
                raise DatasetError(f"{path}, line {line}: {exc}") from exc


def _csv_date(value: str) -> date:
    if "/" in value:
        return datetime.strptime(value, "%d/%m/%Y").date()
    return date.fromisoformat(value)


def _csv_gender(value: str) -> Gender:
    folded = value.casefold()
    if folded in ("male", "nam"):
        return Gender.MALE
    if folded in ("female", "nữ", "nu"):
        return Gender.FEMALE
    raise ValueError(f"gender {value!r} is neither male/Nam nor female/Nữ")


class LookupLog:
    """How often each number was looked up (tests count them; IT sees the totals)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: Counter[str] = Counter()
        self.requests = 0

    def record(self, numbers: Iterable[str]) -> None:
        with self._lock:
            self.requests += 1
            self._numbers.update(numbers)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._numbers)


def make_app(dataset_path: Path, api_key: str | None = None) -> Flask:
    """The reference registry as a WSGI application. Without ``api_key`` anyone may look up."""
    dataset = Path(dataset_path)
    size = dataset_size(dataset)  # fail at start, not on the first request
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    lookups = LookupLog()
    app.extensions["registry.lookups"] = lookups
    app.extensions["registry.dataset"] = dataset
    expected = f"Bearer {api_key}".encode() if api_key else None
    log.info("reference registry: %d citizens in %s", size, dataset)

    def error(status: int, code: str, message: str) -> Response:
        response = jsonify(error_body(code, message))
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="population-registry"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.code or 500, "http_error"
        )
        return error(exc.code or 500, code, exc.description or code)

    @app.get(HEALTH_PATH)
    def health() -> Any:
        return {"status": "ok", "version": API_VERSION, "max_batch": MAX_BATCH}

    @app.post(LOOKUP_PATH)
    def lookup() -> Any:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error(401, "unauthorized", "a valid API key is required (Bearer token)")
        if not request.is_json:
            return error(415, "unsupported_media_type", "send application/json")
        try:
            numbers = list(dict.fromkeys(parse_lookup_request(request.get_json(silent=True))))
        except ProtocolViolation as exc:
            return error(400, "bad_request", str(exc))
        if len(numbers) > MAX_BATCH:
            return error(413, "batch_too_large", f"at most {MAX_BATCH} numbers per request")
        lookups.record(numbers)
        placeholders = ",".join("?" * len(numbers))
        with closing(_connect(dataset)) as conn:
            rows = conn.execute(
                "SELECT identity_number, full_name, birth_date, gender FROM citizens "  # noqa: S608 - placeholders only
                f"WHERE identity_number IN ({placeholders})",
                numbers,
            ).fetchall()
        found = {
            row[0]: Citizen(row[0], row[1], date.fromisoformat(row[2]), Gender(row[3]))
            for row in rows
        }
        return {
            "citizens": [found[n].to_json() for n in numbers if n in found],
            "not_found": [n for n in numbers if n not in found],
        }

    return app


class ReferenceServer:
    """The reference registry on a real socket in a background thread.

    For tests and demos: ``with ReferenceServer(app) as server: server.url``. Port 0 picks a
    free port.
    """

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick (tests start many servers).
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="reference-registry",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.server_port}"

    @property
    def lookups(self) -> LookupLog:
        log_: LookupLog = self.app.extensions["registry.lookups"]
        return log_

    def start(self) -> ReferenceServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
