"""The MSI's tables, built with msitools' wixl from a staged Windows-layout tree.

The real MSI is built by the WiX toolset on the Windows runner (.github/workflows/windows.yml);
this checks, on every machine with wixl, that installer/kyso-agent.wxs still builds and says
what the silent installation and the upgrades rely on.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.skipif(
    shutil.which("wixl") is None or shutil.which("msiinfo") is None,
    reason="msitools' wixl and msiinfo are not installed (Debian: apt-get install wixl msitools)",
)
UPGRADE_CODE = "{CF712AA9-B62F-45BE-8BB6-A7230D0AB347}"


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("msi") / "kyso-agent.msi"
    subprocess.run(
        [sys.executable, str(ROOT / "installer" / "build_msi.py"), "--placeholder", "--out", out],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """Rows of one table (msiinfo export: a header line, a types line, a key line, rows)."""
    text = subprocess.run(
        ["msiinfo", "export", str(msi), name], check=True, capture_output=True, text=True
    ).stdout
    lines = text.splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=False)) for line in lines[3:] if line]


def test_product_and_upgrade_code(msi: Path) -> None:
    props = {row["Property"]: row["Value"] for row in table(msi, "Property")}
    assert props["ProductName"] == "Kyso Agent"
    assert props["UpgradeCode"].upper() == UPGRADE_CODE
    assert props["ALLUSERS"] == "1"  # per-machine
    assert props["ARPPRODUCTICON"] == "KysoIcon"
    assert "WIX_UPGRADE_DETECTED" in props["SecureCustomProperties"]
    version = props["ProductVersion"]
    # Major upgrades: older versions of the same upgrade code are removed, newer ones refuse.
    upgrade = table(msi, "Upgrade")
    assert {row["UpgradeCode"] for row in upgrade} == {UPGRADE_CODE}
    older = next(r for r in upgrade if r["ActionProperty"] == "WIX_UPGRADE_DETECTED")
    newer = next(r for r in upgrade if r["ActionProperty"] == "WIX_DOWNGRADE_DETECTED")
    assert older["VersionMax"] == version
    assert not int(older["Attributes"]) & 2
    assert newer["VersionMin"] == version
    assert int(newer["Attributes"]) & 2
    conditions = {row["Condition"] for row in table(msi, "LaunchCondition")}
    assert "NOT WIX_DOWNGRADE_DETECTED" in conditions
    sequence = {row["Action"]: int(row["Sequence"]) for row in table(msi, "InstallExecuteSequence")}
    assert sequence["InstallValidate"] < sequence["RemoveExistingProducts"]
    assert sequence["RemoveExistingProducts"] < sequence["InstallInitialize"]


def test_program_files_and_start_menu(msi: Path) -> None:
    directories = {row["Directory"]: row for row in table(msi, "Directory")}
    assert directories["INSTALLDIR"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert directories["INSTALLDIR"]["DefaultDir"].endswith("Kyso Agent")
    assert directories["ProgramMenuDir"]["Directory_Parent"] == "ProgramMenuFolder"
    shortcuts = table(msi, "Shortcut")
    assert len(shortcuts) == 1
    shortcut = shortcuts[0]
    assert shortcut["Directory_"] == "ProgramMenuDir"
    assert shortcut["Name"] == "Kyso Agent"
    assert shortcut["Component_"] == "AgentExecutable"
    assert shortcut["Icon_"] == "KysoIcon"
    files = {row["File"]: row for row in table(msi, "File")}
    assert files["KysoAgentExe"]["FileName"] == "kyso-agent.exe"
    assert files["KysoAgentCliExe"]["FileName"] == "kyso-agent-cli.exe"
    names = {row["FileName"] for row in files.values()}
    assert {"modules.toml", "selftest.toml", "ui.toml", "qwindows.dll"} <= names
    # Clean uninstall: the Start-menu folder goes, every component is 64-bit.
    removed = table(msi, "RemoveFile")
    assert [(r["DirProperty"], r["InstallMode"]) for r in removed] == [("ProgramMenuDir", "2")]
    assert all(int(row["Attributes"]) & 256 for row in table(msi, "Component"))


def test_start_at_login_and_machine_settings_in_the_registry(msi: Path) -> None:
    rows = {(r["Key"], r["Name"]): r for r in table(msi, "Registry")}
    run = rows[("Software\\Microsoft\\Windows\\CurrentVersion\\Run", "Kyso Agent")]
    assert run["Root"] == "2"  # HKLM: every user of the PC
    # --autostart: an officer who turned "start at login" off gets no window (agent/autostart.py).
    assert run["Value"] == '"[#KysoAgentExe]" --autostart'
    for name, prop in (
        ("PlatformOrigin", "PLATFORM_ORIGIN"),
        ("PlatformKey", "PLATFORM_KEY"),
        ("Pkcs11Module", "PKCS11_MODULE"),
    ):
        row = rows[("Software\\Kyso\\Agent", name)]
        assert row["Root"] == "2"
        assert row["Value"] == f"[{prop}]"
        assert row["Component_"] == "MachineSettings"


def test_repair_and_upgrade_keep_the_silent_install_settings(msi: Path) -> None:
    searches = {row["Property"]: row["Signature_"] for row in table(msi, "AppSearch")}
    locators = {row["Signature_"]: row for row in table(msi, "RegLocator")}
    actions = {row["Action"]: row for row in table(msi, "CustomAction")}
    sequence = {row["Action"]: row for row in table(msi, "InstallExecuteSequence")}
    for name, prop in (
        ("PlatformOrigin", "PLATFORM_ORIGIN"),
        ("PlatformKey", "PLATFORM_KEY"),
        ("Pkcs11Module", "PKCS11_MODULE"),
    ):
        locator = locators[searches[f"SAVED_{prop}"]]
        assert (locator["Root"], locator["Key"], locator["Name"]) == (
            "2",
            "Software\\Kyso\\Agent",
            name,
        )
        assert int(locator["Type"]) & 16  # the 64-bit registry view
        action = next(a for a in actions.values() if a["Source"] == prop)
        assert int(action["Type"]) & 0x3F == 51  # set a property
        assert action["Target"] == f"[SAVED_{prop}]"
        step = sequence[action["Action"]]
        assert step["Condition"] == f"NOT {prop} AND SAVED_{prop}"
        assert int(sequence["AppSearch"]["Sequence"]) < int(step["Sequence"])
        assert int(step["Sequence"]) < int(sequence["CostFinalize"]["Sequence"])


def test_the_wix_source_marks_the_properties_secure() -> None:
    """For the WiX toolset's build (wixl ignores the attribute)."""
    source = (ROOT / "installer" / "kyso-agent.wxs").read_text(encoding="utf-8")
    for prop in ("PLATFORM_ORIGIN", "PLATFORM_KEY", "PKCS11_MODULE"):
        assert f'<Property Id="{prop}" Secure="yes" />' in source


# --- the MSI's own texts: Vietnamese for the real (WiX) build, English for wixl's -----------


@pytest.fixture(scope="module")
def build_msi() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_msi", ROOT / "installer" / "build_msi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wixls_placeholder_msi_speaks_english_in_code_page_1252(
    msi: Path, build_msi: ModuleType
) -> None:
    lcid, codepage, texts = build_msi.MSI_LANGUAGES["en"]
    assert (lcid, codepage) == (1033, 1252)
    summary = subprocess.run(
        ["msiinfo", "suminfo", str(msi)], check=True, capture_output=True, text=True
    ).stdout
    assert "Template: x64;1033" in summary
    assert f"Subject: {texts['PackageDescription']}\n" in summary
    (condition,) = table(msi, "LaunchCondition")
    assert condition["Description"] == texts["DowngradeMessage"]  # as written, no entities
    assert [row["Title"] for row in table(msi, "Feature")] == [texts["FeatureTitle"]]


def test_the_real_msi_speaks_vietnamese_in_code_page_1258(
    build_msi: ModuleType, tmp_path: Path
) -> None:
    """What candle gets on the Windows runner (--fragment-only writes texts.wxi in Vietnamese),
    checked through wixl's preprocessor: the language, the code pages and the texts."""
    (tmp_path / "texts.wxi").write_text(build_msi.texts_include("vi"), encoding="utf-8")
    done = subprocess.run(
        [
            "wixl",
            "-E",
            "-I",
            str(tmp_path),
            "-D",
            "Version=1.0.0",
            "-D",
            "BundleDir=x",
            "-D",
            "IconFile=x.ico",
            str(ROOT / "installer" / "kyso-agent.wxs"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    wix = "{http://schemas.microsoft.com/wix/2006/wi}"
    product = ElementTree.fromstring(done.stdout).find(f"{wix}Product")
    assert product is not None
    package, upgrade, feature = (
        product.find(f"{wix}{name}") for name in ("Package", "MajorUpgrade", "Feature")
    )
    assert package is not None
    assert upgrade is not None
    assert feature is not None
    assert product.get("Language") == "1066"
    assert product.get("Codepage") == "1258"
    assert package.get("SummaryCodepage") == "1258"
    written = {
        "PackageDescription": package.get("Description", ""),
        "DowngradeMessage": upgrade.get("DowngradeErrorMessage", ""),
        "FeatureTitle": feature.get("Title", ""),
    }
    _lcid, _codepage, texts = build_msi.MSI_LANGUAGES["vi"]
    assert set(written) == set(texts)
    for name, text in texts.items():
        value = written[name]
        assert unicodedata.normalize("NFC", value) == unicodedata.normalize("NFC", text), name
        assert value.encode("cp1258").decode("cp1258") == value, name  # every character fits
    assert unicodedata.normalize("NFC", written["FeatureTitle"]) == "Công cụ ký số Kyso"


def test_every_vietnamese_letter_fits_code_page_1258(build_msi: ModuleType) -> None:
    vowels = "aăâeêioôơuưy"
    tones = ["", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323"]
    letters = [unicodedata.normalize("NFC", v + t) for v in vowels for t in tones]
    text = "".join(letters) + "đ" + "".join(letters).upper() + "Đ"
    written = build_msi.cp1258_form(text)
    assert written.encode("cp1258")
    assert unicodedata.normalize("NFC", written) == text
    with pytest.raises(ValueError, match="1258"):
        build_msi.cp1258_form("Kyso ✓")
