"""Passports per second on SoftHSM2: encoding + signing, apart from QR and PDF rendering.

    .venv/bin/python bench/issue_passports.py [--count 5000] [--pdf 20]

Provisions a throw-away SoftHSM2 token with the central keys (EC P-256 for ES256, RSA-2048 for
PS256; tests/support/passport_hsm.py), then, on one thread (one core):

- sign: the HSM signature alone (C_Sign on the Sig_structure's digest / data);
- encode+sign: DCC JSON -> CWT (CBOR) -> COSE_Sign1 signed on the HSM -> zlib -> base45 ->
  ``HC1:``, as ``issuance`` does per passport (DCC mapping and schema check included);
- QR: the PNG of the payload (segno, alphanumeric, ECC Q);
- PDF: the A4 passport (fpdf2, DejaVu embedded) and its PAdES signature on the HSM.

The bar: at least 1,000 ES256 passports per second per core without images.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    start_cpu, start = time.process_time(), time.perf_counter()
    for i in range(count):
        work(i)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    per_second = count / wall
    print(
        f"  {label:28} {per_second:9.0f}/s   {wall / count * 1e3:7.3f} ms each   "
        f"CPU {cpu / wall * 100:4.0f}% of wall"
    )
    return per_second


def median_rate(label: str, runs: int, work: Callable[[], object]) -> float:
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    middle = statistics.median(times)
    print(f"  {label:28} {1 / middle:9.1f}/s   {middle * 1e3:7.1f} ms median")
    return 1 / middle


def bench(keys: PassportKeys, algorithm: str, count: int, pdfs: int) -> dict[str, float]:
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
    sample = passport(0)
    payload = sample.payload
    print(f"  payload {len(payload)} characters; QR version {render.qr_symbol(payload).version}")
    figures["qr"] = rate("QR PNG", min(count, 500), lambda _i: render.qr_png(payload))
    document = render.PassportDocument(certificate(0), payload, sample.issued_at, sample.expires_at)
    median_rate("PDF (unsigned)", pdfs, lambda: render.passport_pdf(document))
    figures["pdf"] = median_rate(
        "PDF + PAdES signature",
        pdfs,
        lambda: render.sign_pdf(render.passport_pdf(document), signer),
    )
    signer.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="passports per ES256 figure")
    parser.add_argument("--pdf", type=int, default=20, help="PDFs per algorithm")
    options = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="kyso-bench-passports-"))
    softhsm.activate(softhsm.write_config(directory))
    keys = provision_passport_token(directory)
    print(f"SoftHSM2 {keys.token.module_path}; one thread; {os.cpu_count()} CPUs on the machine")
    es256 = bench(keys, "ES256", options.count, options.pdf)
    bench(keys, "PS256", max(200, options.count // 10), options.pdf)
    verdict = "meets" if es256["encode+sign"] >= 1000 else "MISSES"
    print(f"ES256 encode+sign {es256['encode+sign']:.0f}/s per core: {verdict} the bar of 1,000/s")


if __name__ == "__main__":
    main()
