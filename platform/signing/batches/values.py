"""What the batch service takes and returns: the signing context, attempts, progress,
rejections and results."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from kyso.platform.i18n import translate
from kyso.platform.models import (
    BatchStatus,
    RejectReason,
    SigningBatch,
)
from kyso.platform.signing.certificates import TrustStore
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.preview import Dropped
from kyso.platform.signing.timestamps import Timestamper
from kyso.platform.signing.validation import RevocationChecker

# How long the agent may take to start a batch after it was handed a manifest.
MANIFEST_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class SigningContext:
    """What the service needs from the platform's configuration."""

    trust: TrustStore
    manifest_signer: ManifestSigner
    origin: str  # the signing page's origin, exactly as the browser sends it
    manifest_lifetime: timedelta = MANIFEST_LIFETIME
    # Revocation (OCSP/CRL) policy and cache; None checks no revocation (offline tests).
    revocation: RevocationChecker | None = None
    # RFC 3161 time-stamps of stored signatures (CAdES-T); None stores CAdES-BES.
    timestamper: Timestamper | None = None


@dataclass(frozen=True)
class Attempt:
    """Exactly the fields of the agent's ``sign`` request, plus the verification code."""

    id: str
    manifest: str
    certificate: str
    algorithm: str
    digests: tuple[bytes, ...]
    code: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "manifest": self.manifest,
            "certificate": self.certificate,
            "algorithm": self.algorithm,
            "digests": [base64.b64encode(d).decode("ascii") for d in self.digests],
            "code": self.code,
            "count": len(self.digests),
        }


@dataclass(frozen=True)
class Prepared:
    batch_id: str
    total: int
    people: int
    attempt: Attempt
    dropped: tuple[Dropped, ...]


@dataclass(frozen=True)
class Rejection:
    position: int
    reason: RejectReason


@dataclass(frozen=True)
class Progress:
    batch_id: str
    status: BatchStatus
    total: int
    signed: int
    rejected: int
    rejections: tuple[Rejection, ...] = ()  # of this call only

    @property
    def pending(self) -> int:
        return self.total - self.signed - self.rejected


@dataclass(frozen=True)
class RejectedRecord:
    position: int
    person_name: str
    dose_number: int
    vaccinated_on: date
    reason: RejectReason

    def text(self, language: str) -> str:
        return reason_text(self.reason, language)


@dataclass(frozen=True)
class BatchResult:
    batch: SigningBatch
    rejected: tuple[RejectedRecord, ...]
    facilities: tuple[str, ...] = field(default=())


def reason_text(reason: RejectReason, language: str) -> str:
    return translate(f"batches.reason_{reason.value}", language)
