"""The PDF passport's CMS signature, assembled from parts pyHanko made once per signer.

pyHanko builds every PAdES signature's CMS structure afresh with asn1crypto: the signed
attributes (content type, message digest, the signer certificate's ESS signing-certificate-v2
reference) and the SignedData around the signature, with the signer's certificate and chain,
each re-encoded field by field. That was about 13 ms of CPU of a signed passport's 17 ms; the
HSM's signature itself is 0.5 ms. For one signer and one digest algorithm everything but the
document digest, the signature value and the unsigned attributes (the signature time-stamp) is
the same in every signature. So pyHanko builds the structure once, with two probe digests, and
a signature then costs the HSM call and a few byte concatenations.

The result is byte for byte what pyHanko itself produces for the same digest, signature and
unsigned attributes (``tests/platform/test_passport_pdf.py`` compares them), and anything the
template does not cover (a dry run, non-PAdES attributes, CAdES signed attributes, an Adobe
revocation attribute, attribute providers of its own) goes to pyHanko's own path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from asn1crypto import cms

__all__ = ["CmsTemplate", "TemplateCmsSigner", "der_length"]

logger = logging.getLogger(__name__)

_PROBES: Final = (b"\x00", b"\xff")
# Signed attributes that are the same in every signature of one signer (with the message
# digest, whose place the probes find). A signing time, say, would make a template wrong.
_CONSTANT_ATTRIBUTES: Final = frozenset(
    {"content_type", "message_digest", "signing_certificate_v2", "cms_algorithm_protection"}
)


def der_length(length: int) -> bytes:
    """A DER length field."""
    if length < 0x80:
        return bytes((length,))
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(encoded),)) + encoded


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + der_length(len(content)) + content


def _content(der: bytes) -> bytes:
    """The content octets of one DER TLV (its tag and length dropped)."""
    first = der[1]
    start = 2 if first < 0x80 else 2 + (first & 0x7F)
    return der[start:]


@dataclass(frozen=True)
class CmsTemplate:
    """The constant parts of one signer's PAdES CMS structure (for one digest length)."""

    attrs_before: bytes  # the signed attributes' DER up to the message digest
    attrs_after: bytes  # ... and after it
    digest_length: int
    signed_data_prefix: bytes  # version, digestAlgorithms, encapContentInfo, certificates
    signer_info_prefix: bytes  # version, sid, digestAlgorithm
    signature_algorithm: bytes

    @classmethod
    def from_samples(
        cls, attributes: tuple[bytes, bytes], digest_length: int, content_info: bytes
    ) -> CmsTemplate:
        """From pyHanko's signed attributes for the two probe digests and its ContentInfo."""
        first, second = attributes
        if len(first) != len(second):
            raise ValueError("the signed attributes' length depends on the digest")
        differing = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        if not differing or differing[-1] - differing[0] + 1 != digest_length:
            raise ValueError("the signed attributes vary beyond the message digest")
        start = differing[0]
        if first[start : start + digest_length] != _PROBES[0] * digest_length:
            raise ValueError("the message digest is not where the probe put it")
        kinds = {attribute["type"].native for attribute in cms.CMSAttributes.load(first)}
        if not kinds <= _CONSTANT_ATTRIBUTES:
            raise ValueError(f"signed attributes that may vary: {sorted(kinds)}")
        signed_data = cms.ContentInfo.load(content_info)["content"]
        (signer_info,) = signed_data["signer_infos"]
        template = cls(
            attrs_before=first[:start],
            attrs_after=first[start + digest_length :],
            digest_length=digest_length,
            signed_data_prefix=b"".join(
                signed_data[name].dump()
                for name in ("version", "digest_algorithms", "encap_content_info", "certificates")
            ),
            signer_info_prefix=b"".join(
                signer_info[name].dump() for name in ("version", "sid", "digest_algorithm")
            ),
            signature_algorithm=signer_info["signature_algorithm"].dump(),
        )
        # The parts must give back exactly what pyHanko assembled (no CRLs, no other field).
        signature = signer_info["signature"].native
        if template.content_info(first, signature, None) != content_info:
            raise ValueError("the SignedData holds fields the template does not rebuild")
        return template

    def signed_attributes(self, digest: bytes) -> bytes:
        """The DER of the signed attributes (a SET) for ``digest``: what the key signs."""
        if len(digest) != self.digest_length:
            raise ValueError(f"a {self.digest_length}-byte digest is expected")
        return self.attrs_before + digest + self.attrs_after

    def content_info(
        self, signed_attributes: bytes, signature: bytes, unsigned_attributes: bytes | None
    ) -> bytes:
        """The ContentInfo (SignedData) DER: signed attributes as [0] IMPLICIT, the signature,
        the unsigned attributes (a SET's DER, or None) as [1] IMPLICIT."""
        signer_info = (
            self.signer_info_prefix
            + _tlv(0xA0, _content(signed_attributes))
            + self.signature_algorithm
            + _tlv(0x04, signature)
        )
        if unsigned_attributes is not None:
            signer_info += _tlv(0xA1, _content(unsigned_attributes))
        signed_data = _tlv(0x30, self.signed_data_prefix + _tlv(0x31, _tlv(0x30, signer_info)))
        signed_data_oid = cms.ContentType("signed_data").dump()
        return _tlv(0x30, signed_data_oid + _tlv(0xA0, signed_data))


class TemplateCmsSigner:
    """Mixed into a pyHanko ``Signer``: ``async_sign`` of a PAdES document signature uses the
    signer's ``CmsTemplate`` (made on first use per digest algorithm), anything else pyHanko's
    own path."""

    def _fits_template(
        self,
        dry_run: bool,
        use_pades: bool,
        signed_attr_settings: Any,
        is_pdf_sig: bool,
        encap_content_info: Any,
    ) -> bool:
        signer: Any = self
        if dry_run or not use_pades or not is_pdf_sig or encap_content_info is not None:
            return False
        if signer.signed_attr_prov_spec is not None or signer.unsigned_attr_prov_spec is not None:
            return False
        if signer.attribute_certs:
            return False
        return signed_attr_settings is None or (
            signed_attr_settings.cades_signed_attrs is None
            and getattr(signed_attr_settings, "adobe_revinfo_attr", None) is None
        )

    async def _cms_template(self, digest_algorithm: str, digest_length: int) -> CmsTemplate | None:
        """The template for ``digest_algorithm``, made on first use; None when pyHanko's
        structure is not one the template rebuilds (then pyHanko signs every time)."""
        templates: dict[tuple[str, int], CmsTemplate | None]
        templates = self.__dict__.setdefault("_cms_templates", {})
        key = (digest_algorithm, digest_length)
        if key not in templates:
            signer: Any = self
            samples = []
            for probe in _PROBES:
                attrs = await signer.signed_attrs(
                    probe * digest_length, digest_algorithm, use_pades=True
                )
                samples.append(attrs.dump())
            placeholder = await signer.async_sign_raw(samples[0], digest_algorithm, dry_run=True)
            content_info = signer._package_signature(
                digest_algorithm=digest_algorithm,
                cms_version="v1",
                signed_attrs=cms.CMSAttributes.load(samples[0]),
                signature=placeholder,
                unsigned_attrs=None,
                encap_content_info=None,
            ).dump()
            try:
                templates[key] = CmsTemplate.from_samples(
                    (samples[0], samples[1]), digest_length, content_info
                )
            except ValueError:
                logger.warning("PDF signatures: pyHanko's CMS is assembled afresh each time")
                templates[key] = None
        return templates[key]

    async def async_sign(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run: bool = False,
        use_pades: bool = False,
        timestamper: Any = None,
        signed_attr_settings: Any = None,
        is_pdf_sig: bool = True,
        encap_content_info: Any = None,
    ) -> cms.ContentInfo:
        signer: Any = self
        template = None
        if self._fits_template(
            dry_run, use_pades, signed_attr_settings, is_pdf_sig, encap_content_info
        ):
            signer._check_digest_algorithm(digest_algorithm.lower())
            template = await self._cms_template(digest_algorithm.lower(), len(data_digest))
        if template is None:
            result: cms.ContentInfo = await super().async_sign(  # type: ignore[misc]
                data_digest,
                digest_algorithm,
                dry_run=dry_run,
                use_pades=use_pades,
                timestamper=timestamper,
                signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig,
                encap_content_info=encap_content_info,
            )
            return result
        digest_algorithm = digest_algorithm.lower()
        signed = template.signed_attributes(data_digest)
        signature = await signer.async_sign_raw(signed, digest_algorithm)
        attrs = await signer.unsigned_attrs(
            digest_algorithm,
            signature,
            signed_attrs=cms.CMSAttributes.load(signed),
            timestamper=timestamper,
        )
        unsigned = attrs.dump() if attrs is not None else None
        return cms.ContentInfo.load(template.content_info(signed, signature, unsigned))
