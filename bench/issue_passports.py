"""Passports per second on SoftHSM2: encoding + signing, apart from QR and PDF rendering.

    .venv/bin/python bench/issue_passports.py [--count 5000] [--pdf 20]

Provisions a throw-away SoftHSM2 token with the central keys (EC P-256 for ES256, RSA-2048 for
PS256; tests/support/passport_hsm.py), then, on one thread (one core):

- sign: the HSM signature alone (C_Sign on the Sig_structure's digest / data);
- encode+sign: DCC JSON -> CWT (CBOR) -> COSE_Sign1 signed on the HSM -> zlib -> base45 ->
  ``HC1:``, as ``issuance`` does per passport (DCC mapping and schema check included);
- QR: the PNG of the payload (zxing-cpp, alphanumeric, ECC Q), a different passport each;
- PDF: the A4 passport (DejaVu subset once per process) and its PAdES signature by the
  document-signing key on the HSM, with the chain and CRL embedded, a different passport each;
- PDF B-LTA (``--tsa N``, measured apart): the same with the signature and document
  time-stamps of the test PKI's TSA over HTTP on this machine and the validation data
  (the TSA's CRL fetched): what the TSA and LTV add.

Each figure is given per second of wall time and per second of CPU time of this process
("per core": on a shared, loaded machine the wall figure also counts the time other
processes held the core). The bars, per core: ES256 encode + sign >= 1,000/s, QR PNG
>= 500/s, PDF + PAdES >= 50/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.passport_hsm import PassportKeys, provision_passport_token  # noqa: E402

from kyso.agent.token import softhsm  # noqa: E402
from kyso.platform.passport import dcc, render  # noqa: E402
from kyso.platform.passport.hsm import HsmSigner  # noqa: E402
from kyso.platform.passport.issuance import schema_problems  # noqa: E402
from kyso.platform.passport.valuesets import value_sets  # noqa: E402

ISSUER = "Ministry of Health of Viet Nam"
NAMES = ["Nguyễn Văn An", "Trần Thị Đào", "Lê Hoàng Ưng", "Phạm Thị Ngọc Ánh", "Đỗ Đức Mạnh"]


def rate(label: str, count: int, work: Callable[[int], object]) -> float:
    """Runs ``work`` ``count`` times; prints per-second figures; returns the per-core (CPU) one."""
    start_cpu, start = time.process_time(), time.perf_counter()
    for i in range(count):
        work(i)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    print(
        f"  {label:28} {count / wall:9.0f}/s wall  {count / cpu:9.0f}/s per core   "
        f"{cpu / count * 1e3:7.3f} ms CPU each   CPU {cpu / wall * 100:4.0f}% of wall"
    )
    return count / cpu


def bench_lta(
    signing: render.PdfSigning, documents: list[render.PassportDocument], count: int
) -> None:
    """PDF + PAdES B-LTA with the test PKI's TSA over HTTP (kyso.platform.testpki, a thread of
    this process: its CPU time counts here too)."""
    import dataclasses

    from cryptography import x509
    from pyhanko.sign.timestamps import HTTPTimeStamper

    from kyso.platform import testpki

    running = testpki.start(Path(tempfile.mkdtemp(prefix="kyso-bench-pki-")))
    try:
        lta = dataclasses.replace(
            signing,
            timestamper=HTTPTimeStamper(running.pki.tsa_url, timeout=10),
            tsa_roots=tuple(x509.load_pem_x509_certificates(running.pki.anchors_pem())),
            fetch=True,
        )
        render.signed_passport_pdf(documents[0], lta)
        rate(
            "PDF + PAdES B-LTA (TSA, HTTP)",
            count,
            lambda i: render.signed_passport_pdf(documents[i % len(documents)], lta),
        )
    finally:
        running.stop()


def bench(
    keys: PassportKeys,
    algorithm: str,
    count: int,
    pdfs: int,
    signing: render.PdfSigning,
    lta: int = 0,
) -> dict[str, float]:
    codes = value_sets().vaccine_codes(
        disease="840539006",
        vaccine="1119349007",
        product="EU/1/20/1528",
        manufacturer="ORG-100030215",
    )
    signer = HsmSigner(keys.config(algorithm))
    encoder = dcc.Encoder(signer.sign, algorithm, signer.certificate_der)
    print(f"{algorithm} ({count} passports)")
    data = b"x" * 420  # a Sig_structure's size
    figures = {"sign": rate("HSM signature alone", count, lambda _i: signer.sign(data))}

    def certificate(i: int) -> dict[str, Any]:
        vaccination = dcc.Vaccination(
            NAMES[i % len(NAMES)], date(1990, 1, 1 + i % 28), 2, date(2022, 3, 29), codes
        )
        return dcc.certificate(vaccination, uvci=dcc.new_uvci(), issuer=ISSUER)

    def passport(i: int) -> dcc.Encoded:
        dcc_json = certificate(i)
        assert not schema_problems(dcc_json)
        return encoder.encode(dcc_json, datetime.now(UTC))

    figures["encode+sign"] = rate("encode + sign (no images)", count, passport)
    samples = [passport(i) for i in range(min(count, 200))]
    payload = samples[0].payload
    print(f"  payload {len(payload)} characters; QR version {render.qr_symbol(payload).version}")
    figures["qr"] = rate(
        "QR PNG",
        min(count, 1000),
        lambda i: render.symbol_png(render.qr_symbol(samples[i % len(samples)].payload)),
    )
    documents = [
        render.PassportDocument(certificate(i), e.payload, e.issued_at, e.expires_at)
        for i, e in enumerate(samples[:pdfs])
    ]
    render.signed_passport_pdf(documents[0], signing)  # fonts prepared once per process
    rate("PDF (unsigned)", pdfs, lambda i: render.passport_pdf(documents[i % len(documents)]))
    figures["pdf"] = rate(
        "PDF + PAdES signature",
        pdfs,
        lambda i: render.signed_passport_pdf(documents[i % len(documents)], signing),
    )
    if lta:
        bench_lta(signing, documents, lta)
    signer.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="passports per ES256 figure")
    parser.add_argument("--pdf", type=int, default=100, help="PDFs per algorithm")
    parser.add_argument(
        "--tsa", type=int, default=0, help="B-LTA PDFs with the test PKI's TSA (ES256 run)"
    )
    options = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="kyso-bench-passports-"))
    softhsm.activate(softhsm.write_config(directory))
    keys = provision_passport_token(directory)
    print(f"SoftHSM2 {keys.token.module_path}; one thread; {os.cpu_count()} CPUs on the machine")
    document_signer = HsmSigner(keys.document_config())
    signing = render.PdfSigning(
        document_signer, (keys.document_ca.certificate,), (keys.document_crl,)
    )
    es256 = bench(keys, "ES256", options.count, options.pdf, signing, options.tsa)
    bench(keys, "PS256", max(200, options.count // 10), options.pdf, signing)
    document_signer.close()
    print("Per core (CPU time), ES256:")
    for key, label, bar in (
        ("encode+sign", "encode + sign", 1000),
        ("qr", "QR PNG", 500),
        ("pdf", "PDF + PAdES", 50),
    ):
        verdict = "meets" if es256[key] >= bar else "MISSES"
        print(f"  {label:14} {es256[key]:7.0f}/s: {verdict} the bar of {bar:,}/s")


if __name__ == "__main__":
    main()
