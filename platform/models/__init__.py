"""Typed models, one module per domain. Importing this package registers every table."""

from kyso.platform.models.batches import (
    BatchMode,
    BatchStatus,
    ItemState,
    PassportQueueEntry,
    PassportState,
    RejectReason,
    SigningAttempt,
    SigningBatch,
    SigningBatchItem,
    SigningEvidence,
    TimestampQueueEntry,
)
from kyso.platform.models.org import (
    Area,
    AreaLevel,
    AuditEvent,
    Facility,
    FacilityType,
    Role,
    SigningCertificate,
    SigningUnit,
    SigningUnitKind,
    User,
)
from kyso.platform.models.records import (
    Dose,
    DoseSignature,
    Gender,
    Person,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.models.signing import SigningSelection
from kyso.platform.models.throttle import ThrottleAttempt

__all__ = [
    "Area",
    "AreaLevel",
    "AuditEvent",
    "BatchMode",
    "BatchStatus",
    "Dose",
    "DoseSignature",
    "Facility",
    "FacilityType",
    "Gender",
    "ItemState",
    "PassportQueueEntry",
    "PassportState",
    "Person",
    "RejectReason",
    "Role",
    "SigningAttempt",
    "SigningBatch",
    "SigningBatchItem",
    "SigningCertificate",
    "SigningEvidence",
    "SigningSelection",
    "SigningUnit",
    "SigningUnitKind",
    "ThrottleAttempt",
    "TimestampQueueEntry",
    "User",
    "VaccineProduct",
    "VerificationStatus",
]

from kyso.platform.models.feedback import (
    Feedback,
    FeedbackReply,
    FeedbackStatus,
    RecordVersion,
)

__all__ += ["Feedback", "FeedbackReply", "FeedbackStatus", "RecordVersion"]

from kyso.platform.models.sessions import AuthSession  # noqa: E402

__all__ += ["AuthSession"]

from kyso.platform.models.corrections import (  # noqa: E402
    CorrectionRequest,
    CorrectionRequestStatus,
)

__all__ += ["CorrectionRequest", "CorrectionRequestStatus"]

# The passport tables' models live with their feature; importing them here registers them in
# Base.metadata wherever the models are (migrations, schema comparisons, `db revision`).
import kyso.platform.passport.models  # noqa: E402, F401
