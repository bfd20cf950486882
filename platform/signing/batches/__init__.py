"""Signing batches: prepare from the preview, accept signatures in chunks, resume, complete.

The rules this module owns (each has a test in tests/platform/test_signing_batches.py):

- A batch is prepared only from the officer's re-validated selection (scope, verified people,
  not signed in the current version, not edited since ticked; at most 1,000 people and 3,000
  doses), with the officer's registered certificate checked (serial, chain to the trust anchors,
  validity, key usage). The exact bytes are fixed at preparation: each dose's canonical
  certificate document and, per record, the CAdES signed attributes over it.
- A returned signature is kept only if it is the registered certificate's key's signature over
  exactly those bytes, the certificate is still the officer's registered one and valid, and the
  dose was not edited (nor signed by another batch) since. Otherwise the record is rejected with
  its reason; the other records of the chunk are unaffected.
- Signatures are stored as they arrive (a chunk at a time, atomically). Posting a chunk twice,
  completing twice, or resuming after a crash never signs or stores anything twice: a record
  leaves ``pending`` once, and a dose version has at most one current signature (a unique
  constraint backs this up against two batches racing).
- An interrupted batch is resumed with a new attempt (a new manifest) over the records still
  pending; records edited in the meantime are rejected first, never signed with stale data.

Every function takes the Session, leaves the commit to the caller, and raises ``DomainError``.
"""

from __future__ import annotations

from kyso.platform.signing.batches.completion import complete
from kyso.platform.signing.batches.officers import inspect_certificate
from kyso.platform.signing.batches.prepare import new_attempt, prepare
from kyso.platform.signing.batches.queries import recent_batches, result
from kyso.platform.signing.batches.signatures import accept_signatures
from kyso.platform.signing.batches.values import (
    MANIFEST_LIFETIME,
    Attempt,
    BatchResult,
    Prepared,
    Progress,
    RejectedRecord,
    Rejection,
    SigningContext,
    reason_text,
)

__all__ = [
    "MANIFEST_LIFETIME",
    "Attempt",
    "BatchResult",
    "Prepared",
    "Progress",
    "RejectedRecord",
    "Rejection",
    "SigningContext",
    "accept_signatures",
    "complete",
    "inspect_certificate",
    "new_attempt",
    "prepare",
    "reason_text",
    "recent_batches",
    "result",
]
