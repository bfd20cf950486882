"""``make demo`` provisions the central passport key and configures the platform for it.

Before issue 15 the demo had no passport key: the issuer page's "Cấp ngay" answered "Khóa ký hộ
chiếu chưa được cấu hình" and the citizen lookup could never find a passport; then it had the
DCC key but no PDF key, and the citizen's PDF download answered with an error. The demo's own
functions run here in a child process (the demo has its own SoftHSM2 configuration, which a
process reads once): a demo directory is provisioned, the platform prepared with a few people,
the central issuer runs the queue from the page, and a citizen whose dose an officer signed
looks the passport up and downloads the signed PDF.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509
from asn1crypto.crl import CertificateList
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext

from kyso.platform.passport import signedlist

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, os, re, sys
    sys.path[:0] = [sys.argv[1] + "/scripts", sys.argv[1] + "/tests"]
    import demo
    demo.provision()
    demo.prepare_platform()
    os.environ.update(demo.platform_env())
    # The demo's test PKI, as `make demo` serves it (on a free port here): its TSA
    # time-stamps the PDF passport.
    from kyso.platform import testpki
    running_pki = testpki.start(demo.DEMO / "pki", port=demo.PKI_PORT)
    from kyso.platform.app import create_app
    from support.platform_client import csrf_token, login

    app = create_app()
    client = app.test_client()
    login(client, "cucduphong", "kyso-demo-2022")
    token = csrf_token(client, "/passports/issuer")
    page = client.post(
        "/passports/issuer/run", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    lists = client.get("/.well-known/kyso/dcc/trust-list")

    # One demo person's doses signed by a facility officer (the tests' software officer key;
    # the demo's own officer signs through the agent), the passport issued with the demo's
    # central key, then the citizen lookup and the PDF download.
    import base64, types
    from sqlalchemy import select
    from kyso.platform.models import Dose, Person, SigningUnit, User, VerificationStatus
    from kyso.platform.passport import config as passport_config
    from kyso.platform.passport.issuance import IssuanceContext, issue_passports
    from kyso.platform.passport.hsm import HsmConfig, HsmSigner
    from support.cms_pki import create_pki
    from support.passport_data import sign_doses
    pki = create_pki()
    factory = app.extensions["kyso.sessions"]
    with factory() as session:
        officer = session.scalars(select(User).where(User.username == "kyduyet.bennghe")).one()
        admin = session.scalars(select(User).where(User.username == "admin")).one()
        unit = session.get(SigningUnit, officer.signing_unit_id)
        facilities = [f.id for f in unit.facilities]
        dose = session.scalars(
            select(Dose)
            .join(Person)
            .where(Dose.facility_id.in_(facilities))
            .where(Person.identity_number.is_not(None), Person.phone.is_not(None))
            .order_by(Dose.id)
        ).first()
        person = dose.person
        # The registry is not running here: the person is marked verified as its answer would.
        person.verification_status = VerificationStatus.VERIFIED
        session.commit()
        lookup_form = {
            "identity_number": person.identity_number,
            "birth_date": person.birth_date.strftime("%d/%m/%Y"),
            "phone_last4": person.phone[-4:],
        }
        dose_ids = [d.id for d in person.doses if d.facility_id in facilities]
        org = types.SimpleNamespace(officer=officer, admin=admin, unit_ben_nghe=unit)
        sign_doses(session, org, pki, pki.cached_officer("P256"), dose_ids)
    signer = HsmSigner(HsmConfig.from_settings(app.config, os.environ))
    summary = issue_passports(factory, IssuanceContext(
        trust=pki.trust(), sign=signer.sign, algorithm=signer.algorithm,
        certificate_der=signer.certificate_der,
    ))
    token = csrf_token(client, "/passports/lookup")
    found = client.post(
        "/passports/lookup", data={"csrf_token": token, **lookup_form}, follow_redirects=True
    )
    pdf = client.get("/passports/lookup/passport.pdf")
    print(json.dumps({
        "issued": summary.issued,
        "found": found.get_data(as_text=True),
        "pdf_status": pdf.status_code,
        "pdf_type": pdf.mimetype,
        "pdf": base64.b64encode(pdf.data).decode("ascii"),
        "page": page,
        "trust_list": lists.get_data(as_text=True),
        "trust_status": lists.status_code,
        "env": {k: v for k, v in demo.platform_env().items() if k.startswith("KYSO_PASSPORT")},
        "tsa_url": demo.platform_env()["KYSO_TSA_URL"],
        "tsa_root": str(demo.DEMO / "demo-ca.pem"),
    }))
    running_pki.stop()
    """
)


def test_the_demo_issuer_runs_the_queue_with_the_provisioned_passport_key(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port for the demo's PKI (8091 may be in use)
        probe.bind(("127.0.0.1", 0))
        pki_port = probe.getsockname()[1]
    env = dict(
        os.environ,
        KYSO_DEMO_DIR=str(tmp_path / "demo-data"),
        KYSO_DEMO_PEOPLE="12",
        KYSO_SECURE_COOKIES="0",
        KYSO_DEMO_PKI_PORT=str(pki_port),
    )
    for name in [n for n in env if n.startswith("KYSO_PASSPORT_")]:
        del env[name]  # only what the demo configures
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    page = result["page"]
    assert "chưa được cấu hình" not in page
    assert "đã cấp 0 hộ chiếu" in page  # nothing signed yet: the run itself succeeded
    configured = result["env"]
    assert configured["KYSO_PASSPORT_TOKEN_LABEL"] == "Kyso Passport Demo"
    assert "KYSO_PASSPORT_PIN" not in configured  # the PIN comes from a file
    assert Path(configured["KYSO_PASSPORT_PIN_FILE"]).stat().st_mode & 0o077 == 0
    # The signed trust list verifies against the demo CSCA, and names the demo DSC.
    assert result["trust_status"] == 200
    anchors = x509.load_pem_x509_certificates(
        Path(configured["KYSO_PASSPORT_LIST_ANCHORS"]).read_bytes()
    )
    document = signedlist.verify_list(result["trust_list"], anchors)
    assert document["country"] == "VN"
    # The PDF passport's document-signing key is configured: the citizen downloads the PDF.
    assert configured["KYSO_PASSPORT_PDF_KEY_LABEL"] == "pdf-es256"
    assert result["issued"] >= 1
    assert "Hộ chiếu vắc xin của" in result["found"]
    assert result["pdf_status"] == 200, result["found"][-2000:]
    assert result["pdf_type"] == "application/pdf"
    _assert_signed_and_trusted(
        base64.b64decode(result["pdf"]),
        Path(configured["KYSO_PASSPORT_PDF_CHAIN"]),
        Path(result["tsa_root"]),
    )
    # PAdES B-LTA with the test PKI's TSA (KYSO_TSA_URL): a signature time-stamp, then the
    # validation data and a document time-stamp, trusted under the PKI's root.
    assert result["tsa_url"] == f"http://127.0.0.1:{pki_port}/tsa"
    reader = PdfFileReader(io.BytesIO(base64.b64decode(result["pdf"])))
    signature, document_stamp = reader.embedded_signatures
    assert document_stamp.sig_object["/Type"] == "/DocTimeStamp"
    tsa_roots = _certificates(Path(result["tsa_root"]))
    stamp = validate_pdf_timestamp(
        document_stamp, validation_context=ValidationContext(trust_roots=tsa_roots)
    )
    assert stamp.intact
    assert stamp.valid
    assert stamp.trusted
    unsigned = signature.signer_info["unsigned_attrs"]
    assert [a["type"].native for a in unsigned] == ["signature_time_stamp_token"]


def _certificates(path: Path) -> list[Any]:
    return [
        asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in x509.load_pem_x509_certificates(path.read_bytes())
    ]


def _assert_signed_and_trusted(pdf: bytes, roots: Path, tsa_roots: Path) -> None:
    """pyHanko: intact, valid, trusted against the demo document root, revocation checked
    offline with the CRL the PDF carries; its signature time-stamp trusted under the test
    PKI's root."""
    reader = PdfFileReader(io.BytesIO(pdf))
    signature = reader.embedded_signatures[0]  # then the document time-stamp
    dss = DocumentSecurityStore.read_dss(reader)
    context = ValidationContext(
        trust_roots=[
            asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
            for c in x509.load_pem_x509_certificates(roots.read_bytes())
        ],
        other_certs=list(dss.load_certs()),
        crls=[CertificateList.load(crl.get_object().data) for crl in dss.crls],
        allow_fetching=False,
        revocation_mode="require",
    )
    status = validate_pdf_signature(
        signature,
        context,
        ts_validation_context=ValidationContext(
            trust_roots=_certificates(tsa_roots),
            other_certs=list(dss.load_certs()),
            crls=[CertificateList.load(crl.get_object().data) for crl in dss.crls],
            allow_fetching=False,
        ),
    )
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.trusted
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.bottom_line
    assert signature.signer_cert.subject.native["common_name"] == "Kyso Demo PDF Signer"


WARM_START = textwrap.dedent(
    """
    import json, os, sys
    sys.path[:0] = [sys.argv[1] + "/scripts"]
    import demo
    from cryptography.hazmat.primitives import serialization

    real = demo.provision_pdf_key
    demo.provision_pdf_key = lambda module: {}  # a demo-data/ made before the PDF key existed
    demo.provision()
    before = json.loads((demo.DEMO / "demo.json").read_text(encoding="utf-8"))["passport"]
    demo.provision_pdf_key = real
    demo.provision()  # the next start
    os.environ.update(demo.passport_env())
    from kyso.platform import settings
    from kyso.platform.passport import config
    from kyso.platform.passport.hsm import HsmConfig, HsmSigner

    configured = settings.from_environ().config()
    signing = config.pdf_signing(configured, {})
    dcc = HsmSigner(HsmConfig.from_settings(configured, os.environ))
    print(json.dumps({
        "before": before,
        "env": {k: v for k, v in demo.passport_env().items() if k.startswith("KYSO_PASSPORT")},
        "pdf_certificate": signing.signer.certificate.public_bytes(
            serialization.Encoding.PEM).decode(),
        "crls": len(signing.crls),
        "dsc": dcc.certificate.subject.rfc4514_string(),
    }))
    """
)


def test_a_demo_directory_from_before_the_pdf_key_gets_it_on_the_next_start(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, KYSO_DEMO_DIR=str(tmp_path / "demo-data"))
    for name in [n for n in env if n.startswith("KYSO_PASSPORT_")]:
        del env[name]
    done = subprocess.run(
        [sys.executable, "-c", WARM_START, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "pdf_key_label" not in result["before"]
    configured = result["env"]
    assert configured["KYSO_PASSPORT_PDF_KEY_LABEL"] == "pdf-es256"
    assert "Kyso Demo DSC" in result["dsc"]  # the DCC key and its certificate stay
    assert result["crls"] == 1
    certificate = x509.load_pem_x509_certificate(result["pdf_certificate"].encode())
    (root,) = x509.load_pem_x509_certificates(
        Path(configured["KYSO_PASSPORT_PDF_CHAIN"]).read_bytes()
    )
    assert certificate.issuer == root.subject
    certificate.verify_directly_issued_by(root)
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36") in usages  # documentSigning
    key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature
    assert key_usage.content_commitment
