"""The HTTP registry client against the real reference service on an ephemeral port."""

from __future__ import annotations

import gzip
import json
import sqlite3
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask

from kyso.platform.models import Gender
from kyso.platform.registry.client import (
    MAX_RESPONSE_BYTES,
    HttpPopulationRegistry,
    PopulationRegistry,
    RegistryProtocolError,
    RegistryRefused,
    RegistryUnavailable,
    load_registry,
)
from kyso.platform.registry.protocol import LOOKUP_PATH, MAX_BATCH, RegistryCitizen
from kyso.platform.registry.reference_server import (
    Citizen,
    DatasetError,
    ReferenceServer,
    dataset_size,
    make_app,
    read_citizens_csv,
    write_dataset,
)

KEY = "test-registry-key-0123456789"
AN = Citizen("079090123456", "Nguyễn Văn An", date(1990, 5, 17), Gender.MALE)
BINH = Citizen("001305012345", "Trần Thị Bình", date(2005, 1, 2), Gender.FEMALE)
MISSING = "079090999999"

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "registry.db"
    write_dataset(path, [AN, BINH])
    return path


@pytest.fixture
def server(dataset: Path) -> Iterator[ReferenceServer]:
    with ReferenceServer(make_app(dataset, api_key=KEY)) as running:
        yield running


def client(server: ReferenceServer, **options: Any) -> HttpPopulationRegistry:
    options.setdefault("api_key", KEY)
    return HttpPopulationRegistry(server.url, timeout=options.pop("timeout", 5.0), **options)


def test_lookup_finds_citizens_and_reports_the_others(server: ReferenceServer) -> None:
    with client(server) as registry:
        assert isinstance(registry, PopulationRegistry)
        answers = registry.lookup([AN.identity_number, MISSING, BINH.identity_number])
    assert answers == {AN.identity_number: AN, BINH.identity_number: BINH, MISSING: None}
    assert server.lookups.requests == 1
    assert server.lookups.counts() == {AN.identity_number: 1, BINH.identity_number: 1, MISSING: 1}


def test_duplicates_are_asked_once(server: ReferenceServer) -> None:
    with client(server) as registry:
        answers = registry.lookup([AN.identity_number] * 3)
    assert answers == {AN.identity_number: AN}
    assert server.lookups.counts() == {AN.identity_number: 1}


def test_large_lookups_are_split_into_batches(server: ReferenceServer) -> None:
    numbers = [f"0010000{n:05d}" for n in range(5)]
    with client(server, max_batch=2) as registry:
        answers = registry.lookup(numbers)
    assert answers == dict.fromkeys(numbers)
    assert server.lookups.requests == 3
    assert sum(server.lookups.counts().values()) == 5


def test_max_batch_is_bounded_by_the_protocol() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        HttpPopulationRegistry("http://127.0.0.1:9", max_batch=MAX_BATCH + 1)


@pytest.mark.parametrize("api_key", ["wrong-key", None])
def test_a_wrong_or_missing_api_key_is_refused_clearly(
    server: ReferenceServer, api_key: str | None
) -> None:
    with client(server, api_key=api_key) as registry, pytest.raises(RegistryRefused) as caught:
        registry.lookup([AN.identity_number])
    assert caught.value.status_code == 401
    assert "refused the API key" in str(caught.value)
    assert "valid API key is required" in str(caught.value)
    assert server.lookups.requests == 0


def test_without_a_configured_key_anyone_may_look_up(dataset: Path) -> None:
    with (
        ReferenceServer(make_app(dataset)) as open_server,
        client(open_server, api_key=None) as registry,
    ):
        assert registry.lookup([AN.identity_number]) == {AN.identity_number: AN}


def test_health_needs_no_key(server: ReferenceServer) -> None:
    with client(server, api_key=None) as registry:
        assert registry.health() == {"status": "ok", "version": "v1", "max_batch": MAX_BATCH}


def test_connection_refused_is_unavailable() -> None:
    with (
        HttpPopulationRegistry("http://127.0.0.1:9", timeout=2) as registry,
        pytest.raises(RegistryUnavailable) as caught,
    ):
        registry.lookup([AN.identity_number])
    assert caught.value.reason == "connection"


def _wrap(app: Flask, middleware: Callable[[WSGI], WSGI]) -> None:
    app.wsgi_app = middleware(app.wsgi_app)  # type: ignore[method-assign]


def test_a_slow_registry_times_out(dataset: Path) -> None:
    app = make_app(dataset, api_key=KEY)

    def slow(inner: WSGI) -> WSGI:
        def wsgi(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
            time.sleep(1.0)
            return inner(environ, start)

        return wsgi

    _wrap(app, slow)
    with (
        ReferenceServer(app) as slow_server,
        client(slow_server, timeout=0.2) as registry,
        pytest.raises(RegistryUnavailable) as caught,
    ):
        registry.lookup([AN.identity_number])
    assert caught.value.reason == "timeout"


def _answering(status: str, body: bytes, content_type: str = "application/json") -> WSGI:
    def wsgi(_environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return wsgi


def _fake(dataset: Path, wsgi: WSGI) -> ReferenceServer:
    app = make_app(dataset)
    _wrap(app, lambda _inner: wsgi)
    return ReferenceServer(app)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("500 Internal Server Error", "http_500"),
        ("502 Bad Gateway", "http_502"),
        ("503 Service Unavailable", "http_503"),
        ("504 Gateway Timeout", "http_504"),
        ("429 Too Many Requests", "rate_limited"),
    ],
)
def test_server_failures_are_unavailable(dataset: Path, status: str, reason: str) -> None:
    body = json.dumps({"error": {"code": "down", "message": "maintenance"}}).encode()
    with (
        _fake(dataset, _answering(status, body)) as down,
        client(down) as registry,
        pytest.raises(RegistryUnavailable) as caught,
    ):
        registry.lookup([AN.identity_number])
    assert caught.value.reason == reason


def _citizen(number: str, **changes: Any) -> dict[str, Any]:
    data = {**AN.to_json(), "identity_number": number}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"citizens": []}, "lists"),
        ({"citizens": [], "not_found": []}, "unanswered"),
        ({"citizens": [_citizen(AN.identity_number)], "not_found": []}, "unanswered"),
        (
            {
                "citizens": [_citizen(AN.identity_number)],
                "not_found": [MISSING, BINH.identity_number],
            },
            "not asked for",
        ),
        (
            {
                "citizens": [_citizen(AN.identity_number)],
                "not_found": [AN.identity_number, MISSING],
            },
            "twice",
        ),
        (
            {"citizens": [_citizen(AN.identity_number, gender="M")], "not_found": [MISSING]},
            "gender",
        ),
        (
            {
                "citizens": [_citizen(AN.identity_number, birth_date="17/05/1990")],
                "not_found": [MISSING],
            },
            "birth_date",
        ),
        (
            {
                "citizens": [_citizen(AN.identity_number, birth_date="1990-02-30")],
                "not_found": [MISSING],
            },
            "not a date",
        ),
        (
            {"citizens": [_citizen(AN.identity_number, full_name=" ")], "not_found": [MISSING]},
            "name",
        ),
        ([], "JSON object"),
    ],
)
def test_answers_outside_the_protocol_are_refused(dataset: Path, body: Any, message: str) -> None:
    wsgi = _answering("200 OK", json.dumps(body).encode())
    with (
        _fake(dataset, wsgi) as odd,
        client(odd) as registry,
        pytest.raises(RegistryProtocolError, match=message),
    ):
        registry.lookup([AN.identity_number, MISSING])


def test_a_web_page_instead_of_the_registry_is_a_protocol_error(dataset: Path) -> None:
    page = _answering("200 OK", b"<html>captive portal</html>", "text/html")
    with (
        _fake(dataset, page) as portal,
        client(portal) as registry,
        pytest.raises(RegistryProtocolError, match="not JSON"),
    ):
        registry.lookup([AN.identity_number])
    missing = _answering("404 Not Found", b'{"error": {"code": "not_found", "message": "no"}}')
    with (
        _fake(dataset, missing) as wrong_url,
        client(wrong_url) as registry,
        pytest.raises(RegistryProtocolError, match="HTTP 404"),
    ):
        registry.lookup([AN.identity_number])


def test_the_service_checks_requests(server: ReferenceServer) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=auth) as http:
        assert http.post(LOOKUP_PATH, content=b"x").status_code == 415
        bad = http.post(LOOKUP_PATH, json={"identity_numbers": ["12345"]})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "bad_request"
        assert http.post(LOOKUP_PATH, json={"identity_numbers": []}).status_code == 400
        assert http.post(LOOKUP_PATH, json={"numbers": [MISSING]}).status_code == 400
        too_many = [f"0010000{n:05d}" for n in range(MAX_BATCH + 1)]
        large = http.post(LOOKUP_PATH, json={"identity_numbers": too_many})
        assert large.status_code == 413
        assert large.json()["error"]["code"] == "batch_too_large"
        huge = http.post(LOOKUP_PATH, json={"identity_numbers": [MISSING] * 10_000})
        assert huge.status_code == 413
        unknown = http.get("/v1/people")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert http.get(LOOKUP_PATH).status_code == 405
    unauthorised = httpx.post(f"{server.url}{LOOKUP_PATH}", json={"identity_numbers": [MISSING]})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.lookups.requests == 0


def test_write_dataset_replaces_the_whole_dataset(dataset: Path) -> None:
    assert dataset_size(dataset) == 2
    write_dataset(dataset, [BINH])
    assert dataset_size(dataset) == 1
    with sqlite3.connect(dataset) as conn:
        assert conn.execute("SELECT identity_number FROM citizens").fetchall() == [
            (BINH.identity_number,)
        ]
    assert [p.name for p in dataset.parent.iterdir()] == [dataset.name]


def test_a_running_service_sees_a_replaced_dataset(server: ReferenceServer, dataset: Path) -> None:
    with client(server) as registry:
        assert registry.lookup([MISSING]) == {MISSING: None}
        newcomer = Citizen(MISSING, "Lê Văn Cường", date(1990, 1, 1), Gender.MALE)
        write_dataset(dataset, [AN, BINH, newcomer])
        assert registry.lookup([MISSING]) == {MISSING: newcomer}


def test_write_dataset_accepts_plain_gender_strings(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    plain = Citizen(AN.identity_number, AN.full_name, AN.birth_date, "female")  # type: ignore[arg-type]
    write_dataset(path, [plain])
    with ReferenceServer(make_app(path)) as running, client(running, api_key=None) as registry:
        assert registry.lookup([AN.identity_number])[AN.identity_number] == RegistryCitizen(
            AN.identity_number, AN.full_name, AN.birth_date, Gender.FEMALE
        )


@pytest.mark.parametrize(
    ("citizens", "message"),
    [
        ([AN, AN], "appears twice"),
        ([Citizen("07909012345", "X", date(1990, 1, 1), Gender.MALE)], "12 digits"),
        ([Citizen("079090123456", "  ", date(1990, 1, 1), Gender.MALE)], "no name"),
        ([Citizen("079090123456", "X", date(1990, 1, 1), "x")], "gender"),  # type: ignore[arg-type]
    ],
)
def test_write_dataset_refuses_bad_citizens(
    dataset: Path, citizens: list[Citizen], message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        write_dataset(dataset, citizens)
    assert dataset_size(dataset) == 2  # the old dataset is untouched
    assert [p.name for p in dataset.parent.iterdir()] == [dataset.name]


def test_make_app_refuses_what_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset"):
        make_app(tmp_path / "absent.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    with pytest.raises(DatasetError, match="not a reference registry dataset"):
        make_app(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    with pytest.raises(DatasetError, match="not a kyso-reference-registry/1 dataset"):
        make_app(other)


def test_read_citizens_csv(tmp_path: Path) -> None:
    path = tmp_path / "citizens.csv"
    path.write_text(
        "\ufeffidentity_number,full_name,birth_date,gender\n"
        "079090123456,Nguyễn  Văn An,1990-05-17,Nam\n"
        "001305012345,Trần Thị Bình,02/01/2005,Nữ\n",
        encoding="utf-8",
    )
    assert list(read_citizens_csv(path)) == [AN, BINH]
    path.write_text(
        "identity_number,full_name,birth_date,gender\n079090123456,An,1990-05-17,?\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match="line 2"):
        list(read_citizens_csv(path))
    path.write_text("number,name\n1,2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="header"):
        list(read_citizens_csv(path))


def test_load_registry_uses_http_by_default() -> None:
    registry = load_registry({"REGISTRY_URL": "http://127.0.0.1:9/"}, "k")
    assert isinstance(registry, HttpPopulationRegistry)
    assert registry.base_url == "http://127.0.0.1:9"
    registry.close()


def test_load_registry_plugs_in_a_production_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    class Adapter:
        def __init__(self, config: Any, api_key: str | None) -> None:
            self.config, self.api_key = config, api_key

        def lookup(self, identity_numbers: Any) -> dict[str, RegistryCitizen | None]:
            return dict.fromkeys(identity_numbers)

    module = types.ModuleType("kyso_test_registry_adapter")
    module.make = Adapter  # type: ignore[attr-defined]
    module.broken = lambda _config, _key: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    config = {"REGISTRY_ADAPTER": f"{module.__name__}:make", "REGISTRY_URL": "unused"}
    adapter = load_registry(config, "secret")
    assert isinstance(adapter, Adapter)
    assert adapter.api_key == "secret"
    with pytest.raises(TypeError, match="PopulationRegistry"):
        load_registry({"REGISTRY_ADAPTER": f"{module.__name__}:broken"}, None)
    with pytest.raises(ValueError, match=r"package\.module:factory"):
        load_registry({"REGISTRY_ADAPTER": module.__name__}, None)


def test_an_oversized_answer_is_refused_without_holding_it(dataset: Path) -> None:
    body = json.dumps({"results": "A" * (MAX_RESPONSE_BYTES + 1)}).encode()
    with (
        _fake(dataset, _answering("200 OK", body)) as huge,
        client(huge) as registry,
        pytest.raises(RegistryProtocolError, match=f"more than {MAX_RESPONSE_BYTES} bytes"),
    ):
        registry.lookup([AN.identity_number])


def test_a_registry_dribbling_its_answer_times_out(dataset: Path) -> None:
    """httpx's timeout bounds each read; the whole answer must come within it too."""

    def dribble(_environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start("200 OK", [("Content-Type", "application/json")])
        for _ in range(30):
            time.sleep(0.05)
            yield b" "
        yield b"{}"

    started = time.monotonic()
    with (
        _fake(dataset, dribble) as slow,
        client(slow, timeout=0.5) as registry,
        pytest.raises(RegistryUnavailable) as caught,
    ):
        registry.lookup([AN.identity_number])
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.4


def test_a_compressed_answer_is_refused(dataset: Path) -> None:
    """Asked for identity: a gzip answer could inflate past the size limit in one chunk."""
    body = gzip.compress(b'{"results": []}')

    def compressed(_environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        start(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    with (
        _fake(dataset, compressed) as zipped,
        client(zipped) as registry,
        pytest.raises(RegistryProtocolError, match="compressed"),
    ):
        registry.lookup([AN.identity_number])
