"""Evidence kept with every signature (issue 14): CAdES-T time-stamps from the test PKI's RFC 3161
TSA, the OCSP answers stored with the batch, the export checked by tools nobody here wrote
(``openssl cms``/``openssl ts``, pyHanko, ``sha256sum``) and ``kyso-platform verify-signed``."""

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
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_seed import Seed
from support.signing_data import bulk_people
from support.signing_keys import Signer, make_signer

from kyso.platform.cli import main
from kyso.platform.errors import DomainError
from kyso.platform.models import Dose, ItemState, SigningBatchItem, SigningEvidence
from kyso.platform.signing import batches, cms
from kyso.platform.signing.certificates import TrustStore
from kyso.platform.signing.export import export_signed
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.signing.timestamps import Timestamper, signature_value, timestamp_token
from kyso.platform.signing.validation import RevocationChecker
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
    return prepared.batch_id


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
    batch_id = _sign_batch(session, org, signer, _context(test_pki, tsa))
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


def test_tsa_down_hard_policy_stores_nothing_soft_stores_cades_bes(
    session: Session, org: Seed, test_pki: TestPki
) -> None:
    signer = make_signer(test_pki.issuing, "p256")
    down = "http://127.0.0.1:9/tsa"  # discard port: nothing listens
    context = _context(test_pki, Timestamper(down, "hard", timeout=2))
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = bulk_people(session, org, 1, doses=2)
    add_doses(
        session, org.officer, list(session.scalars(select(Dose.id).where(Dose.person_id.in_(ids))))
    )
    session.commit()
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()
    signatures = [signer.sign(d) for d in prepared.attempt.digests]
    with pytest.raises(DomainError) as raised:
        batches.accept_signatures(
            session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures,
            context=context,
        )  # fmt: skip
    session.rollback()
    assert raised.value.key == "timestamps.unavailable"
    assert "TSA" in raised.value.text("en")
    assert "thử ký lại" in raised.value.text("vi")
    states = session.scalars(
        select(SigningBatchItem.state).where(SigningBatchItem.batch_id == prepared.batch_id)
    ).all()
    assert set(states) == {ItemState.PENDING}  # nothing lost: the chunk can be posted again

    soft = _context(test_pki, Timestamper(down, "soft", timeout=2))
    progress = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures,
        context=soft,
    )  # fmt: skip
    session.commit()
    assert progress.signed == 2
    blobs = session.scalars(
        select(SigningBatchItem.cms).where(SigningBatchItem.batch_id == prepared.batch_id)
    ).all()
    assert all(blob is not None and timestamp_token(blob) is None for blob in blobs)


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
