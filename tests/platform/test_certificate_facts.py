"""One way to write a certificate (issue 17): the agent's consent and the platform's pages.

The agent and the platform share no code (tests/test_layout.py); this test holds their two
writings of the same certificates, read from SoftHSM by the agent's token layer, to one
result. The token picker's JavaScript is held to the platform's in Chromium
(test_signing_e2e.py::test_user_page_reads_the_serial_from_the_token).
"""

from __future__ import annotations

from kyso.agent.certificate_facts import certificate_facts as agent_facts
from kyso.agent.token.pkcs11_token import Pkcs11Token
from kyso.platform.formatting import certificate_facts as platform_facts


def test_the_agent_writes_every_certificate_as_the_platform_does(token: Pkcs11Token) -> None:
    certificates = token.list_certificates()
    assert len(certificates) > 3
    labels = set()
    for cert in certificates:
        ours, theirs = agent_facts(cert), platform_facts(cert.der)
        assert ours.organisation == theirs.organisation
        assert ours.tax_code == theirs.tax_code
        assert ours.key_type == theirs.key_type
        assert ours.valid == theirs.valid
        assert ours.serial == theirs.serial
        labels.add(theirs.label())
    # RSA, P-256 and P-384 certificates of one subject: told apart
    key_types = {platform_facts(c.der).key_type for c in certificates}
    assert {"RSA-2048", "ECDSA P-256", "ECDSA P-384"} <= key_types
    assert len(labels) == len(certificates)
