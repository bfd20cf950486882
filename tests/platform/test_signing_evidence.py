"""Evidence kept with every signature (issue 14): CAdES-T time-stamps from the test PKI's RFC 3161
TSA (asked after storage, by the time-stamp queue's worker), the OCSP answers stored with the
batch, the export checked by tools nobody here wrote (``openssl cms``/``openssl ts``, pyHanko,
``sha256sum``) and ``kyso-platform verify-signed``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from support.platform_seed import Seed
from support.signing_data import bulk_people
from support.signing_keys import Signer, make_signer

from kyso.platform.cli import main
from kyso.platform.models import (
    Dose,
    ItemState,
    SigningBatch,
    SigningBatchItem,
    SigningEvidence,
    TimestampQueueEntry,
)
from kyso.platform.signing import batches, cms, stamping
from kyso.platform.signing.certificates import TrustStore
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.signing.timestamps import Timestamper, signature_value, timestamp_token
from kyso.platform.signing.validation import RevocationChecker
from kyso.platform.signing.verify import NOT_STAMPED
from kyso.platform.testpki import TestPki
from kyso.platform.users.service import register_certificate

ORIGIN = "https://tiemchung.example.vn"
OPENSSL = shutil.which("openssl")
requires_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def _context(pki: TestPki, tsa: Timestamper | None) -> batches.SigningContext:
    return batches.SigningContext(
        trust=TrustStore.from_pem(pki.anchors_pem()),
        manifest_signer=ManifestSigner(ec.generate_private_key(ec.SECP256R1())),
        origin=ORIGIN,
        revocation=RevocationChecker("hard", cache_seconds=300),
        timestamper=tsa,
    )


def _sign_batch(
    session: Session,
    org: Seed,
    signer: Signer,
    context: batches.SigningContext,
    people: int = 3,
    chunk: int = 4,
    *,
    stamp: bool = True,
) -> str:
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = bulk_people(session, org, people, doses=2)
    add_doses(
        session, org.officer, list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    )
    session.commit()
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()
    signatures: Sequence[bytes] = [signer.sign(d) for d in prepared.attempt.digests]
    for offset in range(0, len(signatures), chunk):
        batches.accept_signatures(
            session,
            org.officer,
            prepared.batch_id,
            prepared.attempt.id,
            offset,
            signatures[offset : offset + chunk],
            context=context,
        )
        session.commit()
    batches.complete(session, org.officer, prepared.batch_id)
    session.commit()
    if stamp and context.timestamper is not None:
        # The worker (kyso-platform signing timestamp) after the officer's batch.
        run = stamping.stamp_due(_sessions(session), context.timestamper)
        assert run.failed == 0, run.errors
    return prepared.batch_id


def _sessions(session: Session) -> sessionmaker[Session]:
    """Sessions of the test's database, as the worker process opens its own."""
    return sessionmaker(bind=session.get_bind())


def _queued(session: Session, batch_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(TimestampQueueEntry)
            .where(TimestampQueueEntry.batch_id == batch_id)
        )
        or 0
    )


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, timeout=60, cwd=cwd
    )


@requires_openssl
def test_per_record_signatures_are_cades_t_with_evidence_openssl_verifies(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    tsa = Timestamper(test_pki.tsa_url)
    batch_id = _sign_batch(session, org, signer, _context(test_pki, tsa), stamp=False)
    # The officer's path asked the TSA nothing: the signatures are stored CAdES-BES and queued.
    assert tsa.requests == 0
    assert _queued(session, batch_id) == 6
    stored = session.scalars(
        select(SigningBatchItem.cms).where(SigningBatchItem.batch_id == batch_id)
    ).all()
    assert all(blob is not None and timestamp_token(blob) is None for blob in stored)
    session.commit()
    run = stamping.stamp_due(_sessions(session), tsa)
    assert (run.stamped, run.failed) == (6, 0)
    assert _queued(session, batch_id) == 0
    items = session.scalars(
        select(SigningBatchItem).where(SigningBatchItem.batch_id == batch_id)
    ).all()
    assert len(items) == 6
    assert all(item.state is ItemState.SIGNED for item in items)
    assert tsa.requests == 6  # one token per signature
    for item in items:
        assert item.cms is not None
        assert timestamp_token(item.cms) is not None  # CAdES-T, not CAdES-BES
        assert cms.verify_detached(item.cms, item.document) == signer.certificate
    kinds = session.scalars(
        select(SigningEvidence.kind).where(SigningEvidence.batch_id == batch_id)
    ).all()
    assert "ocsp" in kinds  # the OCSP answer, once per batch however many chunks
    assert len(kinds) == len(
        set(
            session.scalars(
                select(SigningEvidence.sha256).where(SigningEvidence.batch_id == batch_id)
            )
        )
    )

    out = tmp_path / "export"
    export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))
    p7s = sorted(out.glob("dose-*.p7s"))
    assert len(p7s) == 6
    assert sorted(p.name for p in (out / "evidence").iterdir())[0].startswith(("crl-", "ocsp-"))
    assert any(p.name.startswith("ocsp-") for p in (out / "evidence").iterdir())
    for path in p7s:
        stem = path.with_suffix("")
        cms_check = _run(
            OPENSSL, "cms", "-verify", "-binary", "-inform", "DER", "-in", path,
            "-content", stem.with_suffix(".json"), "-CAfile", out / "chain.pem",
            "-purpose", "any", "-out", "/dev/null",
        )  # fmt: skip
        assert cms_check.returncode == 0, cms_check.stderr
        assert stem.with_suffix(".sig").read_bytes() == signature_value(path.read_bytes())
        ts_check = _run(
            OPENSSL, "ts", "-verify", "-token_in", "-in", stem.with_suffix(".tst"),
            "-data", stem.with_suffix(".sig"), "-CAfile", out / "chain.pem",
        )  # fmt: skip
        assert ts_check.returncode == 0, ts_check.stdout + ts_check.stderr
        assert "Verification: OK" in ts_check.stdout
    # A token over another signature does not pass: the check can fail.
    first, second = p7s[0].with_suffix(""), p7s[1].with_suffix("")
    wrong = _run(
        OPENSSL, "ts", "-verify", "-token_in", "-in", first.with_suffix(".tst"),
        "-data", second.with_suffix(".sig"), "-CAfile", out / "chain.pem",
    )  # fmt: skip
    assert wrong.returncode != 0


def test_tsa_down_signatures_are_stored_queued_and_stamped_once_it_answers(
    session: Session,
    org: Seed,
    test_pki: TestPki,
    tmp_path: Path,
    database_url: str,
    client: FlaskClient,
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    down = Timestamper("http://127.0.0.1:9/tsa", timeout=2)  # discard port: nothing listens
    batch_id = _sign_batch(session, org, signer, _context(test_pki, down), people=1, stamp=False)
    # Stored at once, never refused for want of a time-stamp; each waits in the queue.
    states = session.scalars(
        select(SigningBatchItem.state).where(SigningBatchItem.batch_id == batch_id)
    ).all()
    assert states == [ItemState.SIGNED, ItemState.SIGNED]
    assert _queued(session, batch_id) == 2
    session.commit()

    started = datetime.now(UTC)
    failed = stamping.stamp_due(_sessions(session), down, clock=lambda: started)
    assert (failed.stamped, failed.failed) == (0, 2)
    assert "cannot be reached" in failed.errors[0]
    assert down.requests == 2  # the first was asked; the second failed with it, not asked
    entries = session.scalars(
        select(TimestampQueueEntry).where(TimestampQueueEntry.batch_id == batch_id)
    ).all()
    assert [e.attempts for e in entries] == [1, 1]
    assert all("cannot be reached" in (e.last_error or "") for e in entries)
    assert all(stamping._utc(e.next_attempt_at) == started + stamping.backoff(1) for e in entries)
    session.commit()
    # Monitoring sees them wait (/metrics reads the queue at scrape time).
    scraped = client.get("/metrics").get_data(as_text=True)
    assert "\nkyso_timestamp_queue_signatures 2\n" in scraped
    assert "\nkyso_timestamp_queue_oldest_seconds " in scraped
    # Put off: not asked again before its time.
    early = stamping.stamp_due(_sessions(session), down, clock=lambda: started)
    assert (early.stamped, early.failed) == (0, 0)

    # Exported meanwhile: CAdES-BES, and said so by the export and by verify-signed.
    out = tmp_path / "export"
    summary = export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))
    assert len(summary.unstamped) == 2
    listed = (out / "NOT-TIMESTAMPED.txt").read_text(encoding="utf-8")
    assert all(name in listed for name in summary.unstamped)
    assert "kyso-platform signing timestamp" in listed
    assert not list(out.glob("*.tst"))
    env = {
        "DATABASE_URL": database_url,
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    checked = _verify(out, env=env)
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(": valid at ") == 2
    assert checked.output.count(NOT_STAMPED) == 2
    assert (
        checked.output.splitlines()[-1]
        == "2 files: 2 OK, 0 failed; 2 signature(s) NOT time-stamped"
    )
    strict = _verify(out, "--require-timestamp", env=env)
    assert strict.exit_code != 0
    assert strict.output.splitlines()[-1].startswith("2 files: 0 OK, 2 failed")

    # The TSA answers again: once due, the worker stamps them, and the export is CAdES-T.
    back = Timestamper(test_pki.tsa_url)
    later = started + stamping.backoff(1)
    done = stamping.stamp_due(_sessions(session), back, clock=lambda: later)
    assert (done.stamped, done.failed) == (2, 0)
    session.expire_all()
    assert _queued(session, batch_id) == 0
    blobs = session.scalars(
        select(SigningBatchItem.cms).where(SigningBatchItem.batch_id == batch_id)
    ).all()
    assert all(blob is not None and timestamp_token(blob) is not None for blob in blobs)
    assert "\nkyso_timestamp_queue_signatures 0\n" in client.get("/metrics").get_data(as_text=True)
    again = export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))
    assert again.unstamped == ()
    assert not (out / "NOT-TIMESTAMPED.txt").exists()
    assert len(list(out.glob("*.tst"))) == 2


def test_the_backoff_doubles_up_to_an_hour() -> None:
    assert [stamping.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert stamping.backoff(8) == timedelta(hours=1)
    assert stamping.backoff(10_000) == timedelta(hours=1)


def test_a_claimed_entry_is_not_claimed_twice_until_its_lease_ends(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    tsa = Timestamper(test_pki.tsa_url)
    batch_id = _sign_batch(session, org, signer, _context(test_pki, tsa), people=1, stamp=False)
    session.commit()
    now = datetime.now(UTC)
    first = stamping._claim(_sessions(session), 10, now)
    assert len(first) == 2
    assert stamping._claim(_sessions(session), 10, now) == []  # another worker gets nothing
    # A worker that died: its entries come back after the lease, and are stamped once.
    back = stamping._claim(_sessions(session), 10, now + stamping.LEASE)
    assert [c.id for c in back] == [c.id for c in first]
    results = tsa.stamp_each([signature_value(c.cms) for c in back])
    assert stamping._record(_sessions(session), back, results, now) == 2
    assert stamping._record(_sessions(session), first, results, now) == 0  # too late: no rewrite
    assert _queued(session, batch_id) == 0


def _verify(directory: Path, *args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, ["verify-signed", str(directory), *args], env=env)


def test_verify_signed_offline_after_expiry_thanks_to_the_time_stamp(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path, database_url: str
) -> None:
    now = datetime.now(UTC)
    expires = now + timedelta(hours=2)
    signer = make_signer(test_pki.issuing, "rsa", not_after=expires)
    batch_id = _sign_batch(
        session, org, signer, _context(test_pki, Timestamper(test_pki.tsa_url)), people=2
    )
    out = tmp_path / "export"
    export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))
    env = {
        "DATABASE_URL": database_url,
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    later = (expires + timedelta(days=30)).isoformat()

    # Offline: the PKI's server is not asked again (OCSP and TSA from the export).
    hits = dict(test_pki.hits)
    done = _verify(out, "--at", later, env=env)
    assert done.exit_code == 0, done.output
    assert dict(test_pki.hits) == hits
    lines = done.output.splitlines()
    assert len([line for line in lines if line.startswith("OK")]) == 4
    assert "time-stamped" in lines[0]
    assert lines[-1] == "4 files: 4 OK, 0 failed"

    # The same signatures without their time-stamps cannot pass after the expiry.
    bare = tmp_path / "bare"
    shutil.copytree(out, bare)
    for path in bare.glob("*.p7s"):
        content_info = asn1_cms.ContentInfo.load(path.read_bytes())
        del content_info["content"]["signer_infos"][0]["unsigned_attrs"]
        path.write_bytes(content_info.dump(force=True))
    expired = _verify(bare, "--at", later, env=env)
    assert expired.exit_code != 0
    assert expired.output.splitlines()[-1] == "4 files: 0 OK, 4 failed"
    assert _verify(bare, env=env).exit_code == 0  # while the certificate is valid, they pass

    # A changed record fails, with the others still checked.
    changed = sorted(out.glob("dose-*.json"))[0]
    changed.write_bytes(changed.read_bytes().replace(b'"', b"'", 1))
    tampered = _verify(out, "--at", later, env=env)
    assert tampered.exit_code != 0
    assert f"FAIL  {changed.with_suffix('.p7s').name}" in tampered.output
    assert tampered.output.splitlines()[-1] == "4 files: 3 OK, 1 failed"


def _pyhanko_status(directory: Path, name: str) -> Any:
    """pyHanko's own CMS validation of ``name.p7s`` over ``name.json``: trust from the
    export's chain.pem, revocation from its evidence/ only (no fetching)."""
    chain = [
        asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in x509.load_pem_x509_certificates((directory / "chain.pem").read_bytes())
    ]
    context = ValidationContext(
        trust_roots=[c for c in chain if c.self_signed],
        other_certs=[c for c in chain if not c.self_signed],
        ocsps=[
            asn1_ocsp.OCSPResponse.load(p.read_bytes())
            for p in (directory / "evidence").glob("ocsp-*.der")
        ],
        allow_fetching=False,
        revocation_mode="soft-fail",
    )
    signed_data = asn1_cms.ContentInfo.load((directory / f"{name}.p7s").read_bytes())["content"]
    return asyncio.run(
        async_validate_detached_cms(
            (directory / f"{name}.json").read_bytes(),
            signed_data,
            signer_validation_context=context,
        )
    )


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum is not installed")
def test_batch_mode_is_time_stamped_and_sha256sums_checks_every_record(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path
) -> None:
    org.unit_ben_nghe.batch_mode = True
    session.commit()
    signer = make_signer(test_pki.issuing, "p256")
    tsa = Timestamper(test_pki.tsa_url)
    batch_id = _sign_batch(session, org, signer, _context(test_pki, tsa), people=3, chunk=1)
    assert tsa.requests == 1  # the one batch signature
    out = tmp_path / "export"
    export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))

    status = _pyhanko_status(out, f"batch-{batch_id}")
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.intact
    assert status.timestamp_validity.trusted
    assert status.bottom_line

    records = sorted(out.glob("dose-*.json"))
    assert len(records) == 6
    summed = _run("sha256sum", "-c", "SHA256SUMS", cwd=out)
    assert summed.returncode == 0, summed.stdout + summed.stderr
    assert summed.stdout.count(": OK") == 6
    records[0].write_bytes(records[0].read_bytes() + b" ")
    assert _run("sha256sum", "-c", "SHA256SUMS", cwd=out).returncode != 0


def test_batch_mode_signature_is_stored_and_queued_when_the_tsa_is_away(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    org.unit_ben_nghe.batch_mode = True
    session.commit()
    signer = make_signer(test_pki.issuing, "p256")
    down = Timestamper("http://127.0.0.1:9/tsa", timeout=2)
    batch_id = _sign_batch(session, org, signer, _context(test_pki, down), people=2, stamp=False)
    batch = session.get(SigningBatch, batch_id)
    assert batch is not None
    assert batch.signed == 4
    assert batch.cms is not None
    assert timestamp_token(batch.cms) is None
    assert stamping.waiting_positions(session, batch_id) == [None]  # the batch signature
    session.commit()
    later = datetime.now(UTC) + stamping.backoff(1)
    run = stamping.stamp_due(_sessions(session), Timestamper(test_pki.tsa_url), clock=lambda: later)
    assert (run.stamped, run.failed) == (1, 0)
    session.expire_all()
    batch = session.get(SigningBatch, batch_id)
    assert batch is not None
    assert batch.cms is not None
    assert timestamp_token(batch.cms) is not None
    assert stamping.waiting_positions(session, batch_id) == []


def test_pyhanko_reports_per_record_signatures_intact_trusted_and_time_stamped(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    batch_id = _sign_batch(
        session, org, signer, _context(test_pki, Timestamper(test_pki.tsa_url)), people=1
    )
    out = tmp_path / "export"
    export_signed(session, batch_id, out, TrustStore.from_pem(test_pki.anchors_pem()))
    names = sorted(p.stem for p in out.glob("dose-*.p7s"))
    assert len(names) == 2
    for name in names:
        status = _pyhanko_status(out, name)
        details = status.pretty_print_details()
        assert status.intact, details
        assert status.valid, details
        assert status.trusted, details
        assert status.timestamp_validity is not None
        assert status.timestamp_validity.trusted
    # pyHanko is not a rubber stamp: another record's content fails its signature.
    (out / f"{names[0]}.json").write_bytes((out / f"{names[1]}.json").read_bytes())
    assert not _pyhanko_status(out, names[0]).intact


def test_the_timestamp_command_stamps_the_queue_and_exits_75_while_the_tsa_is_away(
    session: Session, org: Seed, test_pki: TestPki, tmp_path: Path, database_url: str
) -> None:
    signer = make_signer(test_pki.issuing, "rsa")
    tsa = Timestamper(test_pki.tsa_url)
    batch_id = _sign_batch(session, org, signer, _context(test_pki, tsa), people=2, stamp=False)
    session.commit()
    env = {
        "DATABASE_URL": database_url,
        "KYSO_SECRET_KEY": "test",
        "KYSO_INSTANCE_PATH": str(tmp_path / "instance"),
        "KYSO_TSA_URL": "http://127.0.0.1:9/tsa",
        "KYSO_TSA_TIMEOUT": "2",
    }
    away = CliRunner().invoke(main, ["signing", "timestamp"], env=env)
    assert away.exit_code == 75, away.output
    assert "0 signatures time-stamped" in away.output
    assert "4 put off; 4 waiting" in away.output
    assert _queued(session, batch_id) == 4

    # Put off for 30 s: the command run again at once has nothing due, and says so.
    env["KYSO_TSA_URL"] = test_pki.tsa_url
    early = CliRunner().invoke(main, ["signing", "timestamp"], env=env)
    assert early.exit_code == 0, early.output
    assert "0 signatures time-stamped" in early.output
    assert "4 waiting" in early.output

    session.execute(update(TimestampQueueEntry).values(next_attempt_at=datetime.now(UTC)))
    session.commit()
    done = CliRunner().invoke(main, ["signing", "timestamp"], env=env)
    assert done.exit_code == 0, done.output
    assert "4 signatures time-stamped" in done.output
    assert "0 put off; 0 waiting" in done.output
    session.expire_all()
    assert _queued(session, batch_id) == 0
    blobs = session.scalars(
        select(SigningBatchItem.cms).where(SigningBatchItem.batch_id == batch_id)
    ).all()
    assert all(blob is not None and timestamp_token(blob) is not None for blob in blobs)

    del env["KYSO_TSA_URL"]
    unset = CliRunner().invoke(main, ["signing", "timestamp"], env=env)
    assert unset.exit_code != 0
    assert "KYSO_TSA_URL is not set" in unset.output
