"""`/metrics` counts the domain: batches prepared, completed and failed, signatures stored,
citizens' lookups by outcome, throttled requests, the population registry's latency and failures.

Only what committed is counted: a refused request, rolled back, leaves the counts alone.
The counters belong to the process, so each test reads them before and after.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.cms_pki import Officer
from support.cms_pki import Pki as CmsPki
from support.passport_data import sign_people
from support.passport_fixtures import *  # noqa: F403
from support.platform_client import csrf_token, login
from support.platform_seed import PASSWORD, Seed, add_person
from support.signing_data import bulk_people
from support.signing_fixtures import *  # noqa: F403
from support.signing_keys import Pki

from kyso.platform.models import Dose
from kyso.platform.ops.metrics import BATCHES, count_on_commit
from kyso.platform.registry.client import HttpPopulationRegistry, RegistryUnavailable
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import register_certificate

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def csrf(client: FlaskClient) -> str:
    page = client.get("/signing/batches").get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert found, "no CSRF token on the batches page"
    return found.group(1)


def post(client: FlaskClient, path: str, body: dict[str, Any], token: str) -> Any:
    return client.post(path, json=body, headers={"X-CSRFToken": token})


def read_metrics(client: FlaskClient) -> Samples:
    page = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert page.status_code == 200
    values: Samples = {}
    for family in text_string_to_metric_families(page.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return values


def value(metrics: Samples, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_a_signed_batch_a_lookup_and_a_throttled_login_are_counted(
    signing_app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    pki: Pki,
) -> None:
    before = read_metrics(client)
    register_certificate(session, org.admin, org.officer, pki.p256.serial)
    people = bulk_people(session, org, 4, doses=2)
    doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people))))
    add_doses(session, org.officer, doses)
    session.commit()
    login(client, "kyduyet.bennghe")
    token = csrf(client)
    # A refused prepare (a certificate that is not the officer's) is rolled back: not counted.
    refused = post(client, "/signing/api/batches", {"der": b64(pki.rsa.der)}, token)
    assert refused.status_code == 400
    prepared = post(client, "/signing/api/batches", {"der": b64(pki.p256.der)}, token)
    assert prepared.status_code == 200, prepared.get_json()
    data = prepared.get_json()
    attempt = data["attempt"]
    signatures = [b64(pki.p256.sign(base64.b64decode(d))) for d in attempt["digests"]]
    signatures[0] = b64(pki.stranger.sign(base64.b64decode(attempt["digests"][0])))
    url = f"/signing/api/batches/{data['batch']}"
    body = {"attempt": attempt["id"], "offset": 0, "signatures": signatures}
    assert post(client, f"{url}/signatures", body, token).status_code == 200
    done = post(client, f"{url}/complete", {}, token).get_json()
    assert (done["status"], done["signed"], done["rejected"]) == ("completed", len(doses) - 1, 1)
    client.get("/logout")

    lookup = csrf_token(client, "/passports/lookup")
    form = {"csrf_token": lookup, "birth_date": "17/05/1990", "phone_last4": "0000"}
    client.post("/passports/lookup", data={**form, "identity_number": "079190000999"})
    client.post("/passports/lookup", data={**form, "identity_number": "12"})

    for _ in range(5):
        assert login(client, "kyduyet.bennghe", "wrong-password-x").status_code == 401
    assert login(client, "kyduyet.bennghe", PASSWORD).status_code == 401  # throttled

    after = read_metrics(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("kyso_signing_batches_total", event="prepared") == 1
    assert grew("kyso_signing_batches_total", event="completed") == 1
    assert grew("kyso_signing_batches_total", event="failed") == 0  # one record was signed
    assert grew("kyso_signatures_stored_total") == len(doses) - 1  # the stranger's is rejected
    assert grew("kyso_citizen_lookups_total", outcome="not_found") == 1
    assert grew("kyso_citizen_lookups_total", outcome="bad_input") == 1
    assert grew("kyso_citizen_lookups_total", outcome="found") == 0
    throttled = {
        labels: after[(name, labels)] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "kyso_throttled_requests_total"
    }
    assert sum(throttled.values()) == 1
    ((limit,),) = [labels for labels, grown in throttled.items() if grown]
    assert limit[0] == "limit"
    assert limit[1].startswith("login:")


def test_a_batch_that_ends_with_nothing_signed_is_counted_as_failed(
    signing_app: Flask,
    client: FlaskClient,
    session: Session,
    org: Seed,
    pki: Pki,
) -> None:
    """Every signature is another key's: every record is rejected, the batch ends (nothing is
    pending) with nothing signed. It is counted once as failed, never as completed, however
    often its end is asked for."""
    register_certificate(session, org.admin, org.officer, pki.p256.serial)
    people = bulk_people(session, org, 3, doses=1)
    doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(people))))
    add_doses(session, org.officer, doses)
    session.commit()
    login(client, "kyduyet.bennghe")
    token = csrf(client)
    before = read_metrics(client)
    prepared = post(client, "/signing/api/batches", {"der": b64(pki.p256.der)}, token)
    assert prepared.status_code == 200, prepared.get_json()
    data = prepared.get_json()
    attempt = data["attempt"]
    signatures = [b64(pki.stranger.sign(base64.b64decode(d))) for d in attempt["digests"]]
    url = f"/signing/api/batches/{data['batch']}"
    body = {"attempt": attempt["id"], "offset": 0, "signatures": signatures}
    assert post(client, f"{url}/signatures", body, token).status_code == 200
    for _ in range(2):  # completing twice ends it once
        done = post(client, f"{url}/complete", {}, token).get_json()
        assert (done["status"], done["signed"], done["rejected"]) == ("completed", 0, len(doses))
    assert client.get(f"/signing/batches/{data['batch']}").status_code == 200  # result page
    after = read_metrics(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("kyso_signing_batches_total", event="prepared") == 1
    assert grew("kyso_signing_batches_total", event="failed") == 1
    assert grew("kyso_signing_batches_total", event="completed") == 0
    assert grew("kyso_signatures_stored_total") == 0


def test_a_count_is_forgotten_when_its_transaction_or_savepoint_rolls_back(
    app: Flask, session: Session
) -> None:
    counter = BATCHES.labels(event="completed")
    start = counter._value.get()
    count_on_commit(session, BATCHES, event="completed")
    session.rollback()
    session.commit()
    assert counter._value.get() == start

    count_on_commit(session, BATCHES, event="completed")  # kept
    savepoint = session.begin_nested()
    count_on_commit(session, BATCHES, 5, event="completed")
    savepoint.rollback()  # forgets the 5, keeps the 1
    assert counter._value.get() == start  # nothing before the commit
    session.commit()
    assert counter._value.get() == start + 1


def test_registry_lookups_are_timed_and_their_failures_counted(client: FlaskClient) -> None:
    before = read_metrics(client)
    registry = HttpPopulationRegistry("http://127.0.0.1:9", timeout=2, retries=0)
    with pytest.raises(RegistryUnavailable):
        registry.lookup(["079190000777"])
    registry.close()
    after = read_metrics(client)
    errors = "kyso_registry_errors_total"
    assert value(after, errors, kind="connection") - value(before, errors, kind="connection") == 1
    count = "kyso_registry_request_duration_seconds_count"
    assert value(after, count) - value(before, count) == 1


def test_issued_passports_are_counted_once_their_chunk_commits(
    client: FlaskClient,
    session: Session,
    org: Seed,
    facility_pki: CmsPki,
    facility_officer: Officer,
    issue: Callable[..., Any],
) -> None:
    people = [
        add_person(session, org, f"Hồ Thị Mẫu {i}", identity_number=f"07919000{i:04d}").id
        for i in range(3)
    ]
    session.commit()
    sign_people(session, org, facility_pki, facility_officer, people)
    before = read_metrics(client)
    summary = issue()
    after = read_metrics(client)
    assert summary.issued == 3
    name = "kyso_passports_issued_total"
    assert value(after, name) - value(before, name) == 3
