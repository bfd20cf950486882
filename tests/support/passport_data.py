"""Facility-signed certificates in the passport queue, made by the real signing service.

    queued = sign_people(session, org, pki, officer, person_ids)   # per record (one CMS each)
    queued = sign_people(..., batch_mode=True)                    # one batch signature

The officer's software key signs exactly what a token would (``support.cms_pki``); the batch
service verifies and stores the signatures and queues each signed dose for the passports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from kyso.platform.models import Dose, SigningUnit
from kyso.platform.signing import batches
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.selection import add_doses
from kyso.platform.users.service import active_certificate, register_certificate
from support.cms_pki import Officer, Pki
from support.platform_seed import Seed
from support.signing_data import bulk_people

ORIGIN = "https://tiemchung.example.vn"
_MANIFEST_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Signed:
    batch_id: str
    doses: int


def signing_context(pki: Pki) -> batches.SigningContext:
    return batches.SigningContext(
        trust=pki.trust(), manifest_signer=ManifestSigner(_MANIFEST_KEY), origin=ORIGIN
    )


def sign_doses(
    session: Session,
    org: Seed,
    pki: Pki,
    officer_key: Officer,
    dose_ids: Sequence[int],
    *,
    batch_mode: bool = False,
) -> Signed:
    """Signs these doses (of Bến Nghé) as org.officer through the batch service; commits."""
    officer = org.officer
    registration = active_certificate(session, officer)
    if registration is None or registration.serial_hex != officer_key.serial_hex:
        register_certificate(session, org.admin, officer, officer_key.serial_hex)
    unit = session.get(SigningUnit, org.unit_ben_nghe.id)
    assert unit is not None
    unit.batch_mode = batch_mode
    session.commit()
    add_doses(session, officer, list(dose_ids))
    session.commit()
    context = signing_context(pki)
    prepared = batches.prepare(session, officer, officer_key.der, context)
    session.commit()
    attempt = prepared.attempt
    signatures = [officer_key.sign(d) for d in attempt.digests]
    for offset in range(0, len(signatures), 500):
        progress = batches.accept_signatures(
            session,
            officer,
            prepared.batch_id,
            attempt.id,
            offset,
            signatures[offset : offset + 500],
        )
        session.commit()
    assert progress.rejected == 0, progress.rejections
    return Signed(prepared.batch_id, prepared.total)


def sign_people(
    session: Session,
    org: Seed,
    pki: Pki,
    officer_key: Officer,
    person_ids: Sequence[int],
    *,
    batch_mode: bool = False,
) -> Signed:
    dose_ids = list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(person_ids)).order_by(Dose.id))
    )
    return sign_doses(session, org, pki, officer_key, dose_ids, batch_mode=batch_mode)


def queue_signed(
    session: Session, org: Seed, pki: Pki, officer_key: Officer, people: int
) -> list[int]:
    """``people`` new verified people with two doses each, signed (so queued for passports)
    through the batch service; returns their ids."""
    ids = bulk_people(session, org, people, doses=2)
    session.commit()
    sign_people(session, org, pki, officer_key, ids)
    return ids
