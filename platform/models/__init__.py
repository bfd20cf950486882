"""Typed models, one module per domain. Importing this package registers every table."""

from kyso.platform.models.org import (
    Area,
    AreaLevel,
    AuditEvent,
    Facility,
    FacilityType,
    LoginAttempt,
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

__all__ = [
    "Area",
    "AreaLevel",
    "AuditEvent",
    "Dose",
    "DoseSignature",
    "Facility",
    "FacilityType",
    "Gender",
    "LoginAttempt",
    "Person",
    "Role",
    "SigningCertificate",
    "SigningSelection",
    "SigningUnit",
    "SigningUnitKind",
    "User",
    "VaccineProduct",
    "VerificationStatus",
]
