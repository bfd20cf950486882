"""The signing JSON API and result pages through HTTP: access, CSRF, bad input, the whole flow.

Signatures come from software keys here (tests/support/signing_keys.py); the browser and the
real agent with SoftHSM are in the Chromium tests.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import login
from support.platform_seed import Seed
from support.signing_data import bulk_people
from support.signing_fixtures import *  # noqa: F403
from support.signing_keys import Pki, Signer

from kyso.platform.formatting import certificate_facts
from kyso.platform.models import AuditEvent, Dose, SigningBatch
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import register_certificate


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def csrf(client: FlaskClient) -> str:
    page = client.get("/signing/batches").get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert found, "no CSRF token on the batches page"
    return found.group(1)


def post(client: FlaskClient, path: str, body: dict[str, Any], token: str | None) -> Any:
    headers = {"X-CSRFToken": token} if token else {}
    return client.post(path, json=body, headers=headers)


def ready_officer(session: Session, org: Seed, signer: Signer, people: int = 3) -> list[int]:
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = bulk_people(session, org, people, doses=2)
    doses = list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    add_doses(session, org.officer, doses)
    session.commit()
    return doses


def test_only_officers_and_only_with_a_csrf_token(
    signing_app: Flask, client: FlaskClient, session: Session, org: Seed, pki: Pki
) -> None:
    ready_officer(session, org, pki.rsa)
    body = {"der": b64(pki.rsa.der)}
    anonymous = post(client, "/signing/api/batches", body, None)
    assert anonymous.status_code in (302, 400, 401, 403)
    login(client, "nhanvien.bennghe")  # facility staff
    assert client.get("/signing/batches").status_code == 403
    client.get("/logout")

    login(client, "kyduyet.bennghe")
    refused = post(client, "/signing/api/batches", body, None)
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "common.csrf_failed"
    assert session.scalar(select(SigningBatch.id)) is None


def test_bad_input_gets_a_clear_message_and_changes_nothing(
    signing_app: Flask, client: FlaskClient, session: Session, org: Seed, pki: Pki
) -> None:
    ready_officer(session, org, pki.rsa)
    login(client, "kyduyet.bennghe")
    token = csrf(client)
    for body in ({}, {"der": 42}, {"der": "not base64!"}, {"der": b64(b"garbage")}):
        answer = post(client, "/signing/api/batches", body, token)
        assert answer.status_code == 400, body
        payload = answer.get_json()
        assert payload["message"], body
    assert session.scalar(select(SigningBatch.id)) is None
    wrong = post(client, "/signing/api/batches", {"der": b64(pki.p256.der)}, token)
    assert wrong.status_code == 400
    assert wrong.get_json()["error"].startswith("certcheck.")
    unknown = post(
        client,
        "/signing/api/batches/KB000000NOPE/signatures",
        {"attempt": "KB000000NOPE.1", "offset": 0, "signatures": [b64(b"x")]},
        token,
    )
    assert unknown.status_code == 404


def test_prepare_sign_complete_through_http(
    signing_app: Flask, client: FlaskClient, session: Session, org: Seed, pki: Pki
) -> None:
    doses = ready_officer(session, org, pki.p256, people=4)
    login(client, "kyduyet.bennghe")
    preview = client.get("/signing/preview").get_data(as_text=True)
    assert 'id="kyso-signing-config"' in preview  # the Sign button's configuration
    token = csrf(client)

    checked = post(client, "/signing/api/certificate", {"der": b64(pki.p256.der)}, token)
    assert checked.status_code == 200
    assert checked.get_json()["algorithm"] == "ECDSA_SHA256"

    prepared = post(client, "/signing/api/batches", {"der": b64(pki.p256.der)}, token)
    assert prepared.status_code == 200, prepared.get_json()
    data = prepared.get_json()
    attempt = data["attempt"]
    assert data["total"] == len(doses) == attempt["count"] == len(attempt["digests"])
    assert re.fullmatch(r"[0-9A-Z]{3}-[0-9A-Z]{3}", attempt["code"])
    signatures = [b64(pki.p256.sign(base64.b64decode(d))) for d in attempt["digests"]]
    signatures[0] = b64(pki.stranger.sign(base64.b64decode(attempt["digests"][0])))
    url = f"/signing/api/batches/{data['batch']}"
    first = post(
        client,
        f"{url}/signatures",
        {"attempt": attempt["id"], "offset": 0, "signatures": signatures[:5]},
        token,
    )
    assert first.status_code == 200
    assert first.get_json()["rejections"][0]["reason"] == "signature_invalid"
    rest = post(
        client,
        f"{url}/signatures",
        {"attempt": attempt["id"], "offset": 5, "signatures": signatures[5:]},
        token,
    )
    assert rest.get_json()["pending"] == 0
    done = post(client, f"{url}/complete", {}, token).get_json()
    assert (done["status"], done["signed"], done["rejected"]) == ("completed", 7, 1)

    result = client.get(done["result_url"]).get_data(as_text=True)
    assert 'data-status="completed"' in result
    assert 'data-reason="signature_invalid"' in result
    assert "kyso-signing-config" not in result  # nothing to resume
    # the certificate as every page shows it (issue 17), not its RFC 4514 subject
    shown = re.search(r'<dd id="batch-certificate">([^<]*)</dd>', result)
    assert shown is not None
    assert html.unescape(shown.group(1)) == certificate_facts(pki.p256.der).label()
    assert "ECDSA P-256" in shown.group(1)
    assert "CN=" not in result
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {"signing.batch_prepared", "signing.batch_completed"} <= actions

    # Another officer cannot read or touch it.
    client.get("/logout")
    login(client, "kyduyet.quan1")
    assert client.get(done["result_url"]).status_code == 404
    other = post(client, f"{url}/complete", {}, csrf(client))
    assert other.status_code == 404


def test_an_interrupted_batch_offers_to_sign_the_rest(
    signing_app: Flask, client: FlaskClient, session: Session, org: Seed, pki: Pki
) -> None:
    ready_officer(session, org, pki.rsa, people=3)
    login(client, "kyduyet.bennghe")
    token = csrf(client)
    data = post(client, "/signing/api/batches", {"der": b64(pki.rsa.der)}, token).get_json()
    attempt = data["attempt"]
    url = f"/signing/api/batches/{data['batch']}"
    post(
        client,
        f"{url}/signatures",
        {
            "attempt": attempt["id"],
            "offset": 0,
            "signatures": [b64(pki.rsa.sign(base64.b64decode(attempt["digests"][0])))],
        },
        token,
    )
    state = post(client, f"{url}/complete", {}, token).get_json()
    assert (state["status"], state["signed"], state["pending"]) == ("open", 1, 5)
    page = client.get(state["result_url"]).get_data(as_text=True)
    assert '"mode": "resume"' in page or '"mode":"resume"' in page
    resumed = post(client, f"{url}/attempts", {"der": b64(pki.rsa.der)}, token).get_json()
    assert resumed["attempt"]["count"] == 5
    assert resumed["attempt"]["id"].endswith(".2")


def test_the_manifest_key_is_published(signing_app: Flask, client: FlaskClient) -> None:
    answer = client.get("/.well-known/kyso/manifest-key.pem")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True).startswith("-----BEGIN PUBLIC KEY-----")


def test_no_trust_anchors_is_explained(
    app: Flask, client: FlaskClient, session: Session, org: Seed, pki: Pki, tmp_path: Path
) -> None:
    app.config["TRUST_ANCHORS"] = str(tmp_path / "missing.pem")
    ready_officer(session, org, pki.rsa)
    login(client, "kyduyet.bennghe")
    answer = post(client, "/signing/api/batches", {"der": b64(pki.rsa.der)}, csrf(client))
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "batches.no_trust_anchors"
    assert "CNTT" in answer.get_json()["message"]
