"""The signer trust list: the platform's Document Signer Certificates, signed, for verifiers.

Published at ``/.well-known/kyso/dcc/trust-list`` as a JWS (``signedlist``) of::

    {"generatedAt": "…Z", "country": "VN",
     "certificates": [{"certificateType": "DSC", "country": "VN", "kid": B64, "rawData": B64 DER,
                       "thumbprint": HEX SHA-256, "algorithm": "ES256"}]}

the shape of the EU gateway's trust list entries, so ``SignerList.from_bytes`` reads the
document too. ``kyso-platform dcc verify --trust-list URL|FILE`` downloads or reads it, checks
its signature against the anchors (the CSCA), and verifies with its certificates only: no
database is needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import PassportSigner
from kyso.platform.passport.dcc import COUNTRY, key_id
from kyso.platform.passport.revocation import Signer
from kyso.platform.passport.signedlist import ListError, read_source, verify_list
from kyso.platform.passport.verifier import SignerList

__all__ = ["load_trust_list", "signed_trust_list", "trust_list_document"]


def trust_list_document(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Every signer certificate the platform has issued passports with (``passport_signers``)."""
    now = now or datetime.now(UTC)
    entries = []
    for signer in session.scalars(select(PassportSigner).order_by(PassportSigner.added_at)):
        entries.append(
            {
                "certificateType": "DSC",
                "country": COUNTRY,
                "kid": base64.b64encode(key_id(signer.der)).decode("ascii"),
                "rawData": base64.b64encode(signer.der).decode("ascii"),
                "thumbprint": hashlib.sha256(signer.der).hexdigest(),
                "algorithm": signer.algorithm,
            }
        )
    return {
        "generatedAt": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "country": COUNTRY,
        "certificates": entries,
    }


def signed_trust_list(session: Session, signer: Signer) -> str:
    return signer(trust_list_document(session))


def load_trust_list(
    source: str, anchors: Sequence[x509.Certificate], at: datetime | None = None
) -> SignerList:
    """The signer certificates of the signed trust list at ``source`` (a URL or a file)."""
    document = verify_list(read_source(source), anchors, at)
    entries = document.get("certificates")
    if not isinstance(entries, list):
        raise ListError("the trust list holds no certificates")
    try:
        return SignerList.from_bytes(json.dumps(entries).encode())
    except (KeyError, TypeError, ValueError) as exc:
        raise ListError(f"the trust list's certificates cannot be read: {exc}") from exc
