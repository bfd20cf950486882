"""Passports verifiers can trust and revoke (issue 15): the revocation list in the EU DCC format,
the signed signer trust list, value-set checks, the offline CLI verifier, the requeue command.

Real parts: the central keys on SoftHSM2, SQLite and PostgreSQL, the platform over its test
client, ``kyso-platform`` through click's runner.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.cms_pki import Officer, Pki
from support.passport_data import sign_people
from support.passport_fixtures import *  # noqa: F403
from support.passport_fixtures import signer_for
from support.passport_hsm import PIN, PassportKeys, create_csca, issue_dsc, software_dsc
from support.platform_client import csrf_token, login
from support.platform_seed import Seed, add_person
from werkzeug.serving import make_server

from kyso.platform.cli import main
from kyso.platform.models import Passport, PassportQueueEntry, PassportState
from kyso.platform.passport import dcc, revocation, signedlist, verifier
from kyso.platform.passport.hsm import HsmSigner
from kyso.platform.passport.issuance import supersede_for_person
from kyso.platform.passport.revocation import RevocationList
from kyso.platform.passport.signedlist import ListError
from kyso.platform.passport.valuesets import VaccineCodes

WELL_KNOWN = "/.well-known/kyso/dcc"


@pytest.fixture
def configured(
    app: Flask,
    passport_keys: PassportKeys,
    facility_pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Flask:
    environment = passport_keys.environment("ES256")
    app.config.update(
        PASSPORT_PKCS11_MODULE=environment["KYSO_PASSPORT_PKCS11_MODULE"],
        PASSPORT_TOKEN_LABEL=environment["KYSO_PASSPORT_TOKEN_LABEL"],
        PASSPORT_KEY_LABEL=environment["KYSO_PASSPORT_KEY_LABEL"],
        TRUST_ANCHORS=str(
            facility_pki.write_anchors(tmp_path / "anchors.pem", with_intermediate=True)
        ),
    )
    app.config["PASSPORT_PIN"] = PIN  # KYSO_PASSPORT_PIN, read when the app was made
    return app


@dataclass(frozen=True)
class Issued:
    revoked: Passport  # superseded by a correction
    current: Passport


@pytest.fixture
def issued(
    configured: Flask,
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    issue: Callable[..., Any],
) -> Issued:
    people = [
        add_person(session, org, name, identity_number=f"07919000077{i}").id
        for i, name in enumerate(["Hồ Thị Kỳ Duyên", "Trần Văn Bình"])
    ]
    session.commit()
    sign_people(session, org, facility_pki, facility_officer, people)
    issue()
    supersede_for_person(session, people[0], "name corrected")
    session.commit()
    session.expire_all()
    first, second = (
        session.scalars(select(Passport).where(Passport.person_id == p)).one() for p in people
    )
    assert first.superseded_at is not None
    return Issued(first, second)


@pytest.fixture
def anchor(passport_keys: PassportKeys, tmp_path: Path) -> Path:
    path = tmp_path / "csca.pem"
    path.write_bytes(passport_keys.csca.certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, passport_keys: PassportKeys) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "cli-instance"),
        **passport_keys.environment("ES256"),
    }


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    """A new instance whose database was never upgraded (no table at all)."""
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "fresh"),
    }


# --- the revocation list --------------------------------------------------------------------------


def test_a_superseded_passport_verifies_as_revoked_on_the_page(
    issued: Issued, client: FlaskClient
) -> None:
    # Fails before issue 15: the page had no revocation list and called the old QR valid.
    token = csrf_token(client, "/passports/verify")
    old = client.post(
        "/passports/verify", data={"csrf_token": token, "text": issued.revoked.payload}
    )
    text = old.get_data(as_text=True)
    assert "ĐÃ BỊ THU HỒI" in text
    assert "HỢP LỆ: chứng nhận được ký" not in text
    assert "✘ Không có trong danh sách thu hồi" in text
    current = client.post(
        "/passports/verify", data={"csrf_token": token, "text": issued.current.payload}
    )
    page = current.get_data(as_text=True)
    assert "HỢP LỆ: chứng nhận được ký" in page
    assert "✔ Không có trong danh sách thu hồi" in page
    # A passing step shows no detail (it used to print "the text does not start with HC1:").
    assert "does not start with HC1" not in page


@pytest.mark.parametrize("hash_type", revocation.HASH_TYPES)
def test_each_hash_type_alone_revokes(
    hash_type: str, central_signer: HsmSigner, passport_keys: PassportKeys
) -> None:
    # SIGNATURE hashes r only for ES256 (the whole signature for PS256), UCI the ci,
    # COUNTRYCODEUCI "VN" + ci: a list holding one type finds the certificate by that type.
    certificate = _dcc_vaccination()
    encoder = dcc.Encoder(
        central_signer.sign, central_signer.algorithm, central_signer.certificate_der
    )
    issued_at = datetime.now(UTC).replace(microsecond=0)
    encoded = encoder.encode(certificate, issued_at)
    _, _, _, _, signature = verifier.parse_cose(
        __import__("zlib").decompress(__import__("base45").b45decode(encoded.payload[4:]))
    )
    expected = {
        "SIGNATURE": signature[:32] if central_signer.algorithm == "ES256" else signature,
        "UCI": certificate["v"][0]["ci"].encode(),
        "COUNTRYCODEUCI": ("VN" + certificate["v"][0]["ci"]).encode(),
    }[hash_type]
    hashed = __import__("hashlib").sha256(expected).digest()[:16]
    entry = revocation.Revoked(
        kid=encoder.kid,
        hashes={hash_type: hashed},
        revoked_at=issued_at,
        expires_at=encoded.expires_at,
    )
    listed = RevocationList.from_batches(revocation.build_batches([entry], [hash_type]))
    signers = verifier.SignerList([central_signer.certificate])
    result = verifier.verify(encoded.payload, signers, revocations=listed)
    assert result.revoked_by == hash_type
    assert not result.valid
    assert result.check("revocation") == verifier.Check(
        "revocation",
        False,
        result.check("revocation").detail,  # type: ignore[union-attr]
    )
    # The same hash under another kid revokes nothing.
    other = revocation.Revoked(b"\x00" * 8, entry.hashes, entry.revoked_at, entry.expires_at)
    elsewhere = RevocationList.from_batches(revocation.build_batches([other], [hash_type]))
    assert verifier.verify(encoded.payload, signers, revocations=elsewhere).valid


def test_cli_exports_the_list_and_an_offline_verifier_says_revoked(
    issued: Issued,
    configured: Flask,
    client: FlaskClient,
    cli_env: dict[str, str],
    anchor: Path,
    tmp_path: Path,
) -> None:
    exported = tmp_path / "revocation"
    done = _invoke(cli_env, "dcc", "revocation", "export", str(exported))
    assert done.exit_code == 0, done.output
    assert "3 batches (3 hashes)" in done.output  # one per hash type
    assert (exported / "index.jws").is_file()
    trust = tmp_path / "trust-list.jws"
    trust.write_bytes(client.get(f"{WELL_KNOWN}/trust-list").data)

    # With the platform's database, the CLI asks it directly.
    online = _invoke(cli_env, "dcc", "verify", issued.revoked.payload)
    assert online.exit_code == 1, online.output
    assert "NOT VALID: REVOKED" in online.output

    offline = _fresh_env(tmp_path)  # no database at all: the lists are all it has
    args = ["--trust-list", str(trust), "--revocation", str(exported), "--anchor", str(anchor)]
    revoked = _invoke(offline, "dcc", "verify", *args, issued.revoked.payload)
    assert revoked.exit_code == 1, revoked.output
    assert "NOT VALID: REVOKED" in revoked.output
    assert "FAIL Not on the revocation list — revoked" in revoked.output
    current = _invoke(offline, "dcc", "verify", *args, issued.current.payload)
    assert current.exit_code == 0, current.output
    assert current.output.rstrip().endswith("VALID")
    assert "ok   Not on the revocation list" in current.output
    assert "does not start with HC1" not in current.output


def test_an_offline_verifier_downloads_the_lists_from_the_platform(
    issued: Issued, configured: Flask, anchor: Path, tmp_path: Path
) -> None:
    # A real HTTP server on an ephemeral port: the CLI fetches both lists with httpx.
    server = make_server("127.0.0.1", 0, configured, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}{WELL_KNOWN}"
        args = [
            *("--trust-list", f"{base}/trust-list"),
            *("--revocation", f"{base}/revocation-list"),
            *("--anchor", str(anchor)),
        ]
        offline = _fresh_env(tmp_path)
        revoked = _invoke(offline, "dcc", "verify", *args, issued.revoked.payload)
        assert "NOT VALID: REVOKED" in revoked.output, revoked.output
        current = _invoke(offline, "dcc", "verify", *args, issued.current.payload)
        assert current.exit_code == 0, current.output
        missing = _invoke(
            offline,
            "dcc",
            "verify",
            "--trust-list",
            f"{base}/nothing",
            "--anchor",
            str(anchor),
            "HC1:",
        )
        assert missing.exit_code == 1
        assert f"Error: {base}/nothing answered HTTP 404" in missing.output
    finally:
        server.shutdown()
        thread.join()


def test_the_well_known_urls_serve_the_signed_lists(
    issued: Issued, client: FlaskClient, passport_keys: PassportKeys
) -> None:
    anchors = [passport_keys.csca.certificate]
    answer = client.get(f"{WELL_KNOWN}/revocation-list")
    assert answer.status_code == 200
    assert answer.mimetype == "application/jose"
    index = signedlist.verify_list(answer.data, anchors)
    assert index["lastUpdated"] is not None
    assert {b["hashType"] for b in index["batches"]} == set(revocation.HASH_TYPES)
    for entry in index["batches"]:
        batch = client.get(f"{WELL_KNOWN}/revocation-list/{entry['batchId']}")
        document = signedlist.verify_list(batch.data, anchors)
        assert revocation.batch_id(document) == entry["batchId"]
        assert document["country"] == "VN"
        assert [len(base64.b64decode(e["hash"])) for e in document["entries"]] == [16]
    assert client.get(f"{WELL_KNOWN}/revocation-list/{'0' * 32}").status_code == 404
    listed = signedlist.verify_list(client.get(f"{WELL_KNOWN}/trust-list").data, anchors)
    (entry,) = listed["certificates"]
    assert entry["kid"] == issued.current.signer_kid
    # Through HTTP as a verifier downloads it: a real server is not needed for the format.
    loaded = verifier.SignerList.from_bytes(json.dumps(listed["certificates"]).encode())
    assert len(loaded) == 1


def test_the_published_list_is_rebuilt_after_its_cache_time(
    issued: Issued, configured: Flask, session: Session, passport_keys: PassportKeys
) -> None:
    signer = signer_for(passport_keys, "ES256")
    sign = revocation.list_signer(signer.sign, signer.algorithm, signer.certificate_der)
    anchors = [passport_keys.csca.certificate]
    cached, live = revocation.Publication(ttl=3600), revocation.Publication(ttl=0)

    def hashes(publication: revocation.Publication) -> int:
        index = signedlist.verify_list(publication.index(session, sign), anchors)
        return sum(b["entries"] for b in index["batches"])

    assert hashes(cached) == hashes(live) == 3  # one passport, three hash types
    supersede_for_person(session, issued.current.person_id, "dose date corrected")
    session.commit()
    assert hashes(cached) == 3  # served from the cache until its time is up
    assert hashes(live) == 6


def test_the_lists_are_404_with_the_reason_without_a_passport_key(client: FlaskClient) -> None:
    answer = client.get(f"{WELL_KNOWN}/revocation-list")
    assert answer.status_code == 404
    assert "KYSO_PASSPORT_" in answer.get_data(as_text=True)


def _export_to(directory: Path, batches: list[revocation.Batch], signer: HsmSigner) -> None:
    revocation.export(
        directory,
        batches,
        revocation.list_signer(signer.sign, signer.algorithm, signer.certificate_der),
    )


def _revoked_entries(count: int) -> list[revocation.Revoked]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        revocation.Revoked(
            kid=b"K" * 8,
            hashes=revocation.revocation_hashes(
                signature=bytes([i]) * 64,
                algorithm="ES256",
                uci=f"URN:UVCI:01:VN:{i}",
                country="VN",
            ),
            revoked_at=now + timedelta(seconds=i),
            expires_at=now + timedelta(days=300),
        )
        for i in range(count)
    ]


def test_the_list_is_chunked_and_an_unchanged_batch_keeps_its_id(
    passport_keys: PassportKeys, tmp_path: Path
) -> None:
    signer = signer_for(passport_keys, "ES256")
    entries = _revoked_entries(5)
    batches = revocation.build_batches(entries, ["UCI"], chunk=2)
    assert [len(b.hashes) for b in batches] == [2, 2, 1]
    _export_to(tmp_path / "list", batches, signer)
    assert len(list((tmp_path / "list").glob("*.jws"))) == 4  # three batches and the index
    loaded = RevocationList.load(str(tmp_path / "list"), [passport_keys.csca.certificate])
    assert loaded.batches == 3
    assert len(loaded) == 5
    for entry in entries:
        assert loaded.find(b"K" * 8, entry.hashes) == "UCI"
    # One more revocation: the two full batches keep their ids, only the last one changes.
    grown = revocation.build_batches(_revoked_entries(6), ["UCI"], chunk=2)
    assert [b.batch_id for b in grown[:2]] == [b.batch_id for b in batches[:2]]
    assert grown[2].batch_id != batches[2].batch_id
    _export_to(tmp_path / "list", grown, signer)
    assert not (tmp_path / "list" / f"{batches[2].batch_id}.jws").exists()  # stale one removed


def _tamper(path: Path) -> None:
    header, payload, signature = path.read_text().split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if "entries" in document and isinstance(document["entries"], list):
        document["entries"] = document["entries"][1:]  # a revocation removed
    else:
        document["batches"] = document["batches"][1:]
    changed = base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()
    path.write_text(f"{header}.{changed}.{signature}")


@pytest.mark.parametrize("which", ["index", "batch"])
def test_a_tampered_list_is_refused(
    which: str, passport_keys: PassportKeys, tmp_path: Path, anchor: Path
) -> None:
    signer = signer_for(passport_keys, "ES256")
    batches = revocation.build_batches(_revoked_entries(3), ["SIGNATURE"], chunk=2)
    _export_to(tmp_path / "list", batches, signer)
    target = "index" if which == "index" else batches[0].batch_id
    _tamper(tmp_path / "list" / f"{target}.jws")
    with pytest.raises(ListError, match="altered"):
        RevocationList.load(str(tmp_path / "list"), [passport_keys.csca.certificate])
    # The CLI says so and stops (no traceback), before verifying anything.
    env = _fresh_env(tmp_path)
    refused = _invoke(
        env,
        *("dcc", "verify", "--dsc", str(anchor), "--revocation", str(tmp_path / "list")),
        *("--anchor", str(anchor), "HC1:X"),
    )
    assert refused.exit_code == 1
    assert isinstance(refused.exception, SystemExit)
    assert "Error: the list's signature does not verify: it was altered" in refused.output


def test_a_list_signed_outside_the_anchors_is_refused(
    passport_keys: PassportKeys, tmp_path: Path
) -> None:
    stranger_ca = create_csca()
    key, certificate = software_dsc(stranger_ca)
    document = {"certificates": []}
    token = signedlist.sign_list(
        document,
        lambda data: _raw_ecdsa(key, data),
        "ES256",
        certificate.public_bytes(serialization.Encoding.DER),
    )
    assert signedlist.verify_list(token, [stranger_ca.certificate]) == document
    with pytest.raises(ListError, match="no configured anchor issued"):
        signedlist.verify_list(token, [passport_keys.csca.certificate])


# --- the offline verifier -------------------------------------------------------------------------


def test_verify_on_an_instance_without_db_upgrade_says_what_to_do(tmp_path: Path) -> None:
    # Fails before issue 15: "no such table: passport_signers" as a traceback.
    result = _invoke(_fresh_env(tmp_path), "dcc", "verify", "HC1:ABC")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a message, not an exception
    assert "Error: the database has no passport tables: run `kyso-platform db upgrade`" in (
        result.output
    )
    assert "--trust-list" in result.output


def test_the_trust_list_verifies_offline_without_a_database(
    central_signer: HsmSigner, passport_keys: PassportKeys, tmp_path: Path, anchor: Path
) -> None:
    encoder = dcc.Encoder(
        central_signer.sign, central_signer.algorithm, central_signer.certificate_der
    )
    encoded = encoder.encode(_dcc_vaccination(), datetime.now(UTC))
    document = {
        "certificates": [
            {"kid": base64.b64encode(encoder.kid).decode(), "rawData": _b64(central_signer)}
        ]
    }
    signer = signer_for(passport_keys, "ES256")
    trust = tmp_path / "trust.jws"
    trust.write_text(
        signedlist.sign_list(document, signer.sign, signer.algorithm, signer.certificate_der)
    )
    env = _fresh_env(tmp_path)
    result = _invoke(
        env, "dcc", "verify", "--trust-list", str(trust), "--anchor", str(anchor), encoded.payload
    )
    assert result.exit_code == 0, result.output
    assert "revocation not checked" in result.output
    assert result.output.rstrip().endswith("VALID")
    # Without an anchor the signed list is not taken on trust.
    unanchored = _invoke(env, "dcc", "verify", "--trust-list", str(trust), encoded.payload)
    assert unanchored.exit_code == 1
    assert "no anchor for the signed lists" in unanchored.output


# --- value sets and ES256 -------------------------------------------------------------------------


def _dcc_vaccination(**changes: str) -> dict[str, Any]:
    certificate = dcc.certificate(
        dcc.Vaccination(
            "Hồ Thị Kỳ Duyên",
            date(1990, 5, 17),
            2,
            date(2022, 3, 1),
            VaccineCodes("840539006", "1119349007", "EU/1/20/1528", "ORG-100030215"),
        ),
        uvci=dcc.new_uvci(),
        issuer="Bộ Y tế",
    )
    certificate["v"][0].update(changes)
    return certificate


def _dcc_of(kind: str, **changes: str) -> dict[str, Any]:
    base = _dcc_vaccination()
    common = {"tg": "840539006", "co": "VN", "is": "Bộ Y tế", "ci": dcc.new_uvci()}
    if kind == "v":
        base["v"][0].update(changes)
        return base
    del base["v"]
    if kind == "t":
        entry = {
            **common,
            "tt": "LP6464-4",
            "nm": "PCR",
            "sc": "2022-03-01T10:00:00Z",
            "tr": "260415000",
            "tc": "Bệnh viện Chợ Rẫy",
        }
    else:
        entry = {**common, "fr": "2022-02-01", "df": "2022-02-12", "du": "2022-07-31"}
    entry.update(changes)
    base[kind] = [entry]
    return base


def _raw_ecdsa(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _b64(signer: HsmSigner) -> str:
    return base64.b64encode(signer.certificate_der).decode()


def _software_signed(
    certificate: dict[str, Any], curve: ec.EllipticCurve | None = None
) -> tuple[str, x509.Certificate]:
    csca = create_csca()
    key = ec.generate_private_key(curve or ec.SECP256R1())
    dsc = issue_dsc(csca, key.public_key(), eku=None)
    encoder = dcc.Encoder(
        lambda data: _raw_ecdsa(key, data),
        "ES256",
        dsc.public_bytes(serialization.Encoding.DER),
    )
    return encoder.encode(certificate, datetime.now(UTC)).payload, dsc


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("v", "mp", "EU/1/99/9999"),
        ("v", "ma", "ORG-000000000"),
        ("v", "vp", "J07BN01"),
        ("v", "tg", "840539007"),
        ("v", "co", "XX"),
        ("t", "tt", "LP0000-0"),
        ("t", "tr", "260415001"),
        ("t", "tg", "12345"),
        ("t", "co", "QQ"),
        ("r", "tg", "840539000"),
        ("r", "co", "ZZ"),
    ],
)
def test_codes_outside_the_value_sets_fail(kind: str, field: str, value: str) -> None:
    payload, dsc = _software_signed(_dcc_of(kind, **{field: value}))
    signers = verifier.SignerList([dsc])
    result = verifier.verify(payload, signers)
    assert result.passed("signature")
    assert result.passed("schema")  # the schema names the value sets but does not enforce them
    check = result.check("valuesets")
    assert check is not None
    assert not check.ok
    assert f"{kind}/0/{field}: {value!r} is not in the value set" in check.detail
    assert not result.valid
    good, good_dsc = _software_signed(_dcc_of(kind))
    assert verifier.verify(good, verifier.SignerList([good_dsc])).valid


def test_es256_with_a_p384_key_is_refused_with_the_reason() -> None:
    payload, dsc = _software_signed(_dcc_vaccination(), ec.SECP384R1())
    result = verifier.verify(payload, verifier.SignerList([dsc]))
    check = result.check("signature")
    assert check is not None
    assert not check.ok
    assert "ES256 needs a P-256 key; the signer certificate has a secp384r1 key" in check.detail


# --- requeue --------------------------------------------------------------------------------------


def test_requeue_cli_puts_failed_entries_back(
    session: Session,
    org: Seed,
    facility_pki: Pki,
    facility_officer: Officer,
    cli_env: dict[str, str],
) -> None:
    person = add_person(session, org, "Lê Hoàng Ưng", identity_number="079190000999")
    session.commit()
    sign_people(session, org, facility_pki, facility_officer, [person.id])
    entries = list(
        session.scalars(select(PassportQueueEntry).where(PassportQueueEntry.person_id == person.id))
    )
    assert entries
    for entry in entries:
        entry.state = PassportState.FAILED
    session.commit()
    result = _invoke(cli_env, "requeue-passports")
    assert result.exit_code == 0, result.output
    assert f"{len(entries)} failed entries put back in the queue" in result.output
    session.expire_all()
    assert {e.state for e in entries} == {PassportState.PENDING}


# --- messages to staff ----------------------------------------------------------------------------


def test_the_issuer_reads_an_unconfigured_key_in_one_language(
    app: Flask, client: FlaskClient, org: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails before issue 15: the Vietnamese text embedded the English detail
    # ("Khóa ký hộ chiếu chưa được cấu hình (the passport signing key is not configured: …)").
    for name in [n for n in os.environ if n.startswith("KYSO_PASSPORT_")]:
        monkeypatch.delenv(name)
    login(client, "cucduphong")
    token = csrf_token(client, "/passports/issuer")
    run = client.post("/passports/issuer/run", data={"csrf_token": token}, follow_redirects=True)
    page = run.get_data(as_text=True)
    missing = (
        "KYSO_PASSPORT_PKCS11_MODULE, KYSO_PASSPORT_TOKEN_LABEL, KYSO_PASSPORT_KEY_LABEL, "
        "KYSO_PASSPORT_PIN/KYSO_PASSPORT_PIN_FILE"
    )
    assert f"Khóa ký hộ chiếu chưa được cấu hình: thiếu {missing}." in page
    assert "not configured" not in page
    client.get("/lang/en")
    english = client.post(
        "/passports/issuer/run",
        data={"csrf_token": csrf_token(client, "/passports/issuer")},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"The passport signing key is not configured: {missing} missing." in english
    assert "chưa được cấu hình" not in english
