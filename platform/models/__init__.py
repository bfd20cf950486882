"""Typed models: every table of the platform, one module per domain that owns it.

The rule (``tests/test_layout.py`` checks it): a table's model lives in ``models/<owner>.py``,
where ``<owner>`` is the feature package (``platform/<owner>/``) or plumbing module
(``platform/<owner>.py``) whose service writes it; ``org.py`` holds the organisation every
feature reads and none owns (areas, facilities, signing units); ``columns.py`` the column
helpers. No model lives anywhere else, so that models import nothing but SQLAlchemy, the
database plumbing and each other, and so that importing this package registers every table
(Alembic's environment, schema comparisons, ``kyso-platform db revision``).

Features import models from here (``from kyso.platform.models import Dose``).
"""

from kyso.platform.models.auth import AuditEvent, AuthSession
from kyso.platform.models.corrections import (
    CorrectionRequest,
    CorrectionRequestStatus,
    RecordVersion,
)
from kyso.platform.models.feedback import Feedback, FeedbackReply, FeedbackStatus
from kyso.platform.models.org import (
    Area,
    AreaLevel,
    Facility,
    FacilityType,
    SigningUnit,
    SigningUnitKind,
)
from kyso.platform.models.passport import (
    IssuanceError,
    IssuanceRun,
    Passport,
    PassportQueueEntry,
    PassportSigner,
    PassportState,
    RunStatus,
)
from kyso.platform.models.records import (
    Dose,
    Gender,
    Person,
    VaccineProduct,
    VerificationStatus,
)
from kyso.platform.models.signing import (
    BatchMode,
    BatchStatus,
    DoseSignature,
    ItemState,
    RejectReason,
    SigningAttempt,
    SigningBatch,
    SigningBatchItem,
    SigningEvidence,
    SigningSelection,
    TimestampQueueEntry,
)
from kyso.platform.models.stats import StatsPerson
from kyso.platform.models.throttle import ThrottleAttempt
from kyso.platform.models.users import Role, SigningCertificate, User

__all__ = [
    "Area",
    "AreaLevel",
    "AuditEvent",
    "AuthSession",
    "BatchMode",
    "BatchStatus",
    "CorrectionRequest",
    "CorrectionRequestStatus",
    "Dose",
    "DoseSignature",
    "Facility",
    "FacilityType",
    "Feedback",
    "FeedbackReply",
    "FeedbackStatus",
    "Gender",
    "IssuanceError",
    "IssuanceRun",
    "ItemState",
    "Passport",
    "PassportQueueEntry",
    "PassportSigner",
    "PassportState",
    "Person",
    "RecordVersion",
    "RejectReason",
    "Role",
    "RunStatus",
    "SigningAttempt",
    "SigningBatch",
    "SigningBatchItem",
    "SigningCertificate",
    "SigningEvidence",
    "SigningSelection",
    "SigningUnit",
    "SigningUnitKind",
    "StatsPerson",
    "ThrottleAttempt",
    "TimestampQueueEntry",
    "User",
    "VaccineProduct",
    "VerificationStatus",
]
