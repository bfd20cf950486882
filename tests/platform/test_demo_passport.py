"""``make demo`` provisions the central passport key and configures the platform for it.

Before issue 15 the demo had no passport key: the issuer page's "Cấp ngay" answered "Khóa ký hộ
chiếu chưa được cấu hình" and the citizen lookup could never find a passport. The demo's own
functions run here in a child process (the demo has its own SoftHSM2 configuration, which a
process reads once): a demo directory is provisioned, the platform prepared with a few people,
and the central issuer runs the queue from the page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography import x509

from kyso.platform.passport import signedlist

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, os, re, sys
    sys.path[:0] = [sys.argv[1] + "/scripts", sys.argv[1] + "/tests"]
    import demo
    demo.provision()
    demo.prepare_platform()
    os.environ.update(demo.platform_env())
    from kyso.platform.app import create_app
    from support.platform_client import csrf_token, login

    app = create_app()
    client = app.test_client()
    login(client, "cucduphong", "kyso-demo-2022")
    token = csrf_token(client, "/passports/issuer")
    page = client.post(
        "/passports/issuer/run", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    lists = client.get("/.well-known/kyso/dcc/trust-list")
    print(json.dumps({
        "page": page,
        "trust_list": lists.get_data(as_text=True),
        "trust_status": lists.status_code,
        "env": {k: v for k, v in demo.platform_env().items() if k.startswith("KYSO_PASSPORT")},
    }))
    """
)


def test_the_demo_issuer_runs_the_queue_with_the_provisioned_passport_key(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        KYSO_DEMO_DIR=str(tmp_path / "demo-data"),
        KYSO_DEMO_PEOPLE="12",
        KYSO_SECURE_COOKIES="0",
    )
    for name in [n for n in env if n.startswith("KYSO_PASSPORT_")]:
        del env[name]  # only what the demo configures
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    page = result["page"]
    assert "chưa được cấu hình" not in page
    assert "đã cấp 0 hộ chiếu" in page  # nothing signed yet: the run itself succeeded
    configured = result["env"]
    assert configured["KYSO_PASSPORT_TOKEN_LABEL"] == "Kyso Passport Demo"
    assert "KYSO_PASSPORT_PIN" not in configured  # the PIN comes from a file
    assert Path(configured["KYSO_PASSPORT_PIN_FILE"]).stat().st_mode & 0o077 == 0
    # The signed trust list verifies against the demo CSCA, and names the demo DSC.
    assert result["trust_status"] == 200
    anchors = x509.load_pem_x509_certificates(
        Path(configured["KYSO_PASSPORT_LIST_ANCHORS"]).read_bytes()
    )
    document = signedlist.verify_list(result["trust_list"], anchors)
    assert document["country"] == "VN"
