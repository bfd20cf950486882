"""The validation data kept with each batch: the OCSP responses and CRLs its signatures were
accepted on (``signing_evidence``), written by ``export-signed`` next to the signatures."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import SigningEvidence
from kyso.platform.signing.validation import Evidence

__all__ = ["batch_evidence", "store_evidence"]


def store_evidence(session: Session, batch_id: str, evidence: Evidence | None) -> int:
    """Adds the answers of ``evidence`` the batch does not hold yet; returns how many."""
    if evidence is None:
        return 0
    found = {
        *(("ocsp", der) for der in evidence.ocsp),
        *(("crl", der) for der in evidence.crls),
    }
    held = set(
        session.scalars(select(SigningEvidence.sha256).where(SigningEvidence.batch_id == batch_id))
    )
    added = 0
    for kind, der in sorted(found):
        digest = hashlib.sha256(der).hexdigest()
        if digest in held:
            continue
        held.add(digest)
        session.add(SigningEvidence(batch_id=batch_id, kind=kind, sha256=digest, der=der))
        added += 1
    return added


def batch_evidence(session: Session, batch_id: str) -> list[SigningEvidence]:
    return list(
        session.scalars(
            select(SigningEvidence)
            .where(SigningEvidence.batch_id == batch_id)
            .order_by(SigningEvidence.id)
        )
    )
