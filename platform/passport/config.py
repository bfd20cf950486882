"""The passport feature's configuration, from the app's settings (``kyso.platform.settings``
reads these variables when the app is made).

==================================  ===========================================================
``KYSO_PASSPORT_PKCS11_MODULE``     the PKCS#11 module of the HSM (SoftHSM2 in development)
``KYSO_PASSPORT_TOKEN_LABEL``       the token holding the central key
``KYSO_PASSPORT_KEY_LABEL``         the key's label (its certificate: same CKA_ID on the token)
``KYSO_PASSPORT_PIN``               the token's user PIN, or ``KYSO_PASSPORT_PIN_FILE``: a file
                                    holding it (never in the database)
``KYSO_PASSPORT_ALGORITHM``         ``ES256`` (default) or ``PS256``
``KYSO_PASSPORT_CERTIFICATE``       (optional) the key's certificate as a PEM/DER file, when the
                                    token holds none
``KYSO_PASSPORT_ISSUER``            the DCC ``is`` (default "Ministry of Health of Viet Nam")
``KYSO_PASSPORT_DSC_LIST``          (optional) more signer certificates the verifier trusts: a
                                    PEM bundle or the EU gateway's JSON trust list
``KYSO_PASSPORT_LIST_ANCHORS``      (verifiers) the certificates the signed trust and revocation
                                    lists must be signed under: the CSCA (PEM), or the list
                                    signer's own certificate
``KYSO_PASSPORT_PDF_KEY_LABEL``     the PDF passport's document-signing key, another key than
                                    the DCC signer's (its certificate: emailProtection or
                                    documentSigning, no DCC usage)
``KYSO_PASSPORT_PDF_TOKEN_LABEL``   (optional) its token, when not the DCC signer's
``KYSO_PASSPORT_PDF_ALGORITHM``     (optional) ``ES256`` (default) or ``PS256``
``KYSO_PASSPORT_PDF_CERTIFICATE``   (optional) its certificate file, when the token holds none
``KYSO_PASSPORT_PDF_CHAIN``         (optional) PEM: its certificate's issuers up to the root,
                                    embedded in every PDF (validation data)
``KYSO_PASSPORT_PDF_CRLS``          (optional) CRL files (DER or PEM, separated by ``:``) of
                                    those issuers, embedded in every PDF; re-read when changed
``KYSO_PASSPORT_TSA_URL``           (optional) the RFC 3161 time-stamping authority, by default
                                    the platform's (``KYSO_TSA_URL``): every PDF is then PAdES
                                    B-LTA (signature and document time-stamps); when it fails,
                                    ``KYSO_TSA_POLICY`` hard refuses the PDF (try again), soft
                                    signs it B-B (no time-stamps); ``KYSO_TSA_TIMEOUT`` applies;
                                    ``off``: no time-stamps in the PDF (PAdES B-B)
``KYSO_PASSPORT_TSA_ROOTS``         (with the TSA) PEM: the TSA certificate's trust roots
                                    (default ``KYSO_TRUST_ANCHORS``)
``KYSO_PASSPORT_PDF_FETCH_REVOCATION`` ``1``: fetch revocation data not in the CRL files (the
                                    TSA's) from the certificates' CRL/OCSP addresses
``KYSO_TRUST_ANCHORS``              the facility certificates' trust anchors (as for signing)
==================================  ===========================================================

Each may also be set in the app's config as ``PASSPORT_<NAME>`` (tests do).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy.orm import Session

from kyso.platform.errors import DomainError
from kyso.platform.passport.hsm import (
    PIN_FILE_VARIABLE,
    PIN_VARIABLE,
    HsmConfig,
    HsmError,
    HsmSigner,
)
from kyso.platform.passport.issuance import DEFAULT_ISSUER, IssuanceContext, platform_signers
from kyso.platform.passport.render import PdfSigning
from kyso.platform.passport.revocation import Signer
from kyso.platform.passport.revocation import list_signer as make_list_signer
from kyso.platform.passport.signedlist import ListError, load_anchors
from kyso.platform.passport.verifier import SignerList
from kyso.platform.signing.certificates import TrustStore, load_trust_store

__all__ = [
    "dsc_list",
    "error_detail",
    "issuance_context",
    "issuer_name",
    "list_anchors",
    "list_signer",
    "open_signer",
    "pdf_signing",
    "trust_store",
]


logger = logging.getLogger(__name__)


def error_detail(exc: DomainError) -> str:
    """A DomainError's English text with its technical detail, for the command line."""
    detail = exc.values.get("detail")
    return exc.text("en") + (f" ({detail})" if detail else "")


def _pin(settings: Mapping[str, Any]) -> dict[str, str]:
    """The PIN or its file, as ``HsmConfig`` takes them (read from the environment, like every
    setting, by ``kyso.platform.settings``)."""
    secrets = {
        PIN_VARIABLE: settings.get("PASSPORT_PIN"),
        PIN_FILE_VARIABLE: settings.get("PASSPORT_PIN_FILE"),
    }
    return {name: str(value) for name, value in secrets.items() if value}


def _setting(settings: Mapping[str, Any], name: str) -> str | None:
    value = settings.get(f"PASSPORT_{name}")
    return str(value) if value else None


def issuer_name(settings: Mapping[str, Any]) -> str:
    return (_setting(settings, "ISSUER") or DEFAULT_ISSUER)[:80]


def open_signer(settings: Mapping[str, Any], extensions: dict[str, Any]) -> HsmSigner:
    """The central signer, opened once per process (kept in the app's extensions)."""
    signer = extensions.get("kyso.passport_signer")
    if signer is None:
        try:
            signer = HsmSigner(HsmConfig.from_settings(settings, _pin(settings)))
        except HsmError as exc:
            # The page shows the catalogue text only (Vietnamese, or English with the switch);
            # the technical detail goes to the log and to the CLI (``error_detail``).
            logger.warning("passport signer unavailable (%s): %s", exc.code, exc)
            raise DomainError(f"passport.error_{exc.code}", detail=str(exc), **exc.values) from exc
        extensions["kyso.passport_signer"] = signer
    assert isinstance(signer, HsmSigner)
    return signer


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def pdf_signing(settings: Mapping[str, Any], extensions: dict[str, Any]) -> PdfSigning:
    """How PDF passports are signed: the document-signing key (opened once per process), its
    chain, CRLs (read again when a file changes) and TSA."""
    signer = extensions.get("kyso.passport_pdf_signer")
    if signer is None:
        try:
            signer = HsmSigner(HsmConfig.for_documents(settings, _pin(settings)))
        except HsmError as exc:
            raise DomainError(f"passport.error_{exc.code}", detail=str(exc)) from exc
        extensions["kyso.passport_pdf_signer"] = signer
    assert isinstance(signer, HsmSigner)
    chain_path = _setting(settings, "PDF_CHAIN")
    crl_paths = [p for p in (_setting(settings, "PDF_CRLS") or "").split(os.pathsep) if p]
    # The platform's TSA (KYSO_TSA_URL, which time-stamps the officers' signatures) unless the
    # passport has one of its own; its roots: KYSO_PASSPORT_TSA_ROOTS, else the platform's
    # trust anchors (a national root certifies both the CAs and the TSAs).
    # ``off``: PDFs without time-stamps even when the platform has a TSA.
    tsa = _setting(settings, "TSA_URL") or (str(settings.get("TSA_URL") or "").strip() or None)
    if tsa == "off":
        tsa = None
    tsa_roots_path = _setting(settings, "TSA_ROOTS") or (
        str(settings["TRUST_ANCHORS"]) if tsa and settings.get("TRUST_ANCHORS") else None
    )
    fetch = _setting(settings, "PDF_FETCH_REVOCATION") in ("1", "true", "yes", "True")
    policy = str(settings.get("TSA_POLICY") or "hard")
    timeout = float(settings.get("TSA_TIMEOUT") or 10.0)
    files = [p for p in (chain_path, tsa_roots_path, *crl_paths) if p]
    try:
        stamp = tuple(Path(p).stat().st_mtime_ns for p in files)
    except OSError as exc:
        raise DomainError(
            "passport.error_hsm_certificate", detail=f"cannot read the PDF validation data: {exc}"
        ) from exc
    key = (signer, tuple(files), stamp, tsa, fetch, policy, timeout)
    cached = extensions.get("kyso.passport_pdf_signing")
    if cached is not None and cached[0] == key:
        signing = cached[1]
        assert isinstance(signing, PdfSigning)
        return signing
    try:
        chain = (
            tuple(x509.load_pem_x509_certificates(Path(chain_path).read_bytes()))
            if (chain_path)
            else ()
        )
        crls = tuple(_load_crl(Path(p).read_bytes()) for p in crl_paths)
        tsa_roots = (
            tuple(x509.load_pem_x509_certificates(Path(tsa_roots_path).read_bytes()))
            if tsa_roots_path
            else ()
        )
    except (OSError, ValueError) as exc:
        raise DomainError(
            "passport.error_hsm_certificate", detail=f"cannot read the PDF validation data: {exc}"
        ) from exc
    timestamper: Any = None
    if tsa:
        from pyhanko.sign.timestamps import HTTPTimeStamper

        timestamper = HTTPTimeStamper(tsa, timeout=timeout)
    signing = PdfSigning(signer, chain, crls, timestamper, tsa_roots, fetch, policy)
    extensions["kyso.passport_pdf_signing"] = (key, signing)
    return signing


def trust_store(settings: Mapping[str, Any], instance_path: str) -> TrustStore:
    configured = settings.get("TRUST_ANCHORS")
    path = Path(configured) if configured else Path(instance_path) / "trust-anchors.pem"
    if not path.exists():
        raise DomainError("passport.error_no_trust_anchors", path=str(path))
    return load_trust_store(path)


def issuance_context(
    settings: Mapping[str, Any], instance_path: str, signer: HsmSigner, *, chunk: int = 200
) -> IssuanceContext:
    return IssuanceContext(
        trust=trust_store(settings, instance_path),
        sign=signer.sign,
        algorithm=signer.algorithm,
        certificate_der=signer.certificate_der,
        issuer=issuer_name(settings),
        chunk=chunk,
    )


def dsc_list(
    session: Session, settings: Mapping[str, Any], extra: bytes | None = None
) -> SignerList:
    """The platform's own signer certificates, the configured DSC list, and ``extra``."""
    signers = SignerList(platform_signers(session))
    configured = _setting(settings, "DSC_LIST")
    sources = [Path(configured).read_bytes()] if configured else []
    if extra is not None:
        sources.append(extra)
    for data in sources:
        for certificate in SignerList.from_bytes(data).certificates():
            signers.add(certificate)
    return signers


def list_signer(settings: Mapping[str, Any], extensions: dict[str, Any]) -> Signer:
    """Signs the published lists with the central passport key (its HSM), the key whose
    certificate the CSCA issued: verifiers anchor the lists on the CSCA they already trust."""
    signer = open_signer(settings, extensions)
    return make_list_signer(signer.sign, signer.algorithm, signer.certificate_der)


def list_anchors(settings: Mapping[str, Any], given: Path | None = None) -> list[x509.Certificate]:
    """The anchors for signed lists: ``given`` (a PEM file), else ``KYSO_PASSPORT_LIST_ANCHORS``.
    ``ListError`` when there are none."""
    configured = given or (
        Path(value) if (value := _setting(settings, "LIST_ANCHORS")) is not None else None
    )
    if configured is None:
        raise ListError(
            "no anchor for the signed lists: give --anchor CSCA.pem or set "
            "KYSO_PASSPORT_LIST_ANCHORS"
        )
    try:
        return load_anchors(configured.read_bytes())
    except OSError as exc:
        raise ListError(f"cannot read the list anchors {configured}: {exc.strerror}") from exc
