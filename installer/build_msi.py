"""Builds the agent's MSI from a PyInstaller folder (Windows layout) with wixl, or writes the
generated WiX fragment for the WiX toolset on Windows.

    python installer/build_msi.py --bundle dist/kyso-agent --out dist/kyso-agent.msi
    python installer/build_msi.py --placeholder --out build/msi/kyso-agent.msi      (Linux, CI)
    python installer/build_msi.py --bundle dist\\kyso-agent --fragment-only           (Windows)

installer/kyso-agent.wxs holds everything static (product, upgrade code, shortcuts, login
entry, machine settings); this script adds build/msi/files.wxs, one component per file of the
bundle's _internal folder, in the component group ``BundleFiles``.

The MSI's own texts (the package description, the "newer version installed" message, the
feature title) come from build/msi/texts.wxi, written here for one language: Vietnamese (LCID
1066, code page 1258) for the real MSI that the WiX toolset builds on Windows (``--language vi``,
the default), English (1033, 1252) for wixl's placeholder build, since wixl cannot write code
page 1258 tables. Windows Installer has no UTF-8 code page it supports officially, so the
Vietnamese texts are written in the form code page 1258 holds: base letters with their
circumflex, breve or horn precomposed (â ă ê ô ơ ư đ), tone marks as combining characters.

``--placeholder``: on Linux there is no Windows bundle (PyInstaller does not cross-compile), so
a staged tree with the Windows file names and small placeholder files stands in for it. That MSI
is for inspecting the tables only (tests/installer/test_msi.py); the real MSI is built on the
Windows runner (.github/workflows/windows.yml).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
WXS = ROOT / "installer" / "kyso-agent.wxs"
ICON = ROOT / "installer" / "kyso-agent.ico"
BUILD = ROOT / "build" / "msi"
EXECUTABLES = ("kyso-agent.exe", "kyso-agent-cli.exe")

# The shape of a Windows one-folder build (the files that matter for inspection; the real
# bundle has more). Data files of the agent are copied for real.
PLACEHOLDER_FILES = (
    "kyso-agent.exe",
    "kyso-agent-cli.exe",
    "_internal/python311.dll",
    "_internal/base_library.zip",
    "_internal/pkcs11/_pkcs11.cp311-win_amd64.pyd",
    "_internal/PySide6/Qt6Core.dll",
    "_internal/PySide6/Qt6Gui.dll",
    "_internal/PySide6/Qt6Widgets.dll",
    "_internal/PySide6/Qt6Network.dll",
    "_internal/PySide6/QtCore.pyd",
    "_internal/PySide6/plugins/platforms/qwindows.dll",
    "_internal/PySide6/plugins/styles/qmodernwindowsstyle.dll",
    "_internal/cryptography/hazmat/bindings/_rust.pyd",
)


def agent_version() -> str:
    namespace: dict[str, str] = {}
    exec((ROOT / "agent" / "__init__.py").read_text(encoding="utf-8"), namespace)  # noqa: S102 - our own file
    return namespace["__version__"]


def stage_placeholder(target: Path) -> Path:
    """A Windows-layout tree of placeholder files plus the agent's real data files."""
    shutil.rmtree(target, ignore_errors=True)
    for relative in PLACEHOLDER_FILES:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"Placeholder for {relative}: this MSI is for inspecting the tables, not installing.\n",
            encoding="utf-8",
        )
    data = target / "_internal" / "kyso" / "agent"
    (data / "locales").mkdir(parents=True)
    shutil.copy2(ROOT / "agent" / "modules.toml", data / "modules.toml")
    for catalogue in sorted((ROOT / "agent" / "locales").glob("*.toml")):
        shutil.copy2(catalogue, data / "locales" / catalogue.name)
    return target


# (LCID, code page, texts) per language of the MSI's own tables.
MSI_LANGUAGES: dict[str, tuple[int, int, dict[str, str]]] = {
    "vi": (
        1066,
        1258,
        {
            "PackageDescription": "Kyso — công cụ ký số chứng nhận tiêm chủng bằng USB token",
            "DowngradeMessage": (
                "Máy này đã có phiên bản Kyso Agent mới hơn, không cần cài bản này."
                " Nếu muốn cài bản cũ, hãy gỡ bản đang có trước (Cài đặt, mục Ứng dụng)."
            ),
            "FeatureTitle": "Công cụ ký số Kyso",
        },
    ),
    "en": (
        1033,
        1252,
        {
            "PackageDescription": (
                "Kyso signing agent (USB token signing for vaccination certificates)"
            ),
            "DowngradeMessage": (
                "A newer version of Kyso Agent is already installed; this one is not needed."
                " To install an older version, uninstall the current one first"
                " (Settings, Apps)."
            ),
            "FeatureTitle": "Kyso Agent",
        },
    ),
}
# The letters code page 1258 holds precomposed; every other mark stays a combining character.
_CP1258_MODIFIERS = frozenset("\u0302\u0306\u031b")  # circumflex, breve, horn


def cp1258_form(text: str) -> str:
    """``text`` as code page 1258 writes Vietnamese: NFD, then each base letter recomposed with
    its circumflex, breve or horn (â, ă, ơ...), tone marks left combining. Encodable in cp1258
    (ValueError otherwise); NFC of the result is NFC of ``text``."""
    clusters: list[list[str]] = []  # a base character and its combining marks
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char) and clusters:
            clusters[-1].append(char)
        else:
            clusters.append([char])
    out: list[str] = []
    for base, *marks in clusters:
        modifiers = "".join(m for m in marks if m in _CP1258_MODIFIERS)
        tones = "".join(m for m in marks if m not in _CP1258_MODIFIERS)
        composed = unicodedata.normalize("NFC", base + modifiers)
        # NFD puts a dot below before the circumflex (ậ = a, dot below, circumflex).
        out.append((composed if len(composed) == 1 else base + modifiers) + tones)
    result = "".join(out)
    try:
        result.encode("cp1258")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not writable in code page 1258: {text!r}") from exc
    return result


def texts_include(language: str) -> str:
    """build/msi/texts.wxi: the MSI's language, code page and texts as WiX variables."""
    lcid, codepage, texts = MSI_LANGUAGES[language]
    values = {"ProductLanguage": str(lcid), "ProductCodepage": str(codepage), **texts}
    if codepage == 1258:
        values = {name: cp1258_form(value) for name, value in values.items()}
    else:
        for value in values.values():
            value.encode(f"cp{codepage}")  # fails the build rather than write "?"
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<!-- Written by build_msi.py. -->"]
    lines.append("<Include>")
    for name, value in values.items():
        # A define's value is not XML-unescaped: keep out what would need escaping.
        if any(char in value for char in '<>&"$'):
            raise ValueError(f'{name}: no < > & " $ in MSI texts')
        lines.append(f'  <?define {name} = "{value}" ?>')
    lines.append("</Include>")
    return "\n".join(lines) + "\n"


def _id(prefix: str, relative: str) -> str:
    """A stable WiX identifier (letters, digits, underscore; at most 72 characters)."""
    return prefix + hashlib.sha256(relative.encode("utf-8")).hexdigest()[:32]


def _relative_to_root(path: Path) -> str:
    """wixl wants relative sources (it joins them to the folder it runs in: the repository)."""
    return Path(os.path.relpath(path.resolve(), ROOT)).as_posix()


def fragment(bundle: Path) -> str:
    """The WiX fragment with every file of the bundle except the two executables."""
    for name in EXECUTABLES:
        if not (bundle / name).is_file():
            raise SystemExit(f"{bundle / name} is missing: is this a Windows one-folder build?")
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<!-- Generated by installer/build_msi.py from the bundle; do not edit. -->",
        '<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">',
        "  <Fragment>",
        '    <DirectoryRef Id="INSTALLDIR">',
    ]
    components: list[str] = []

    def walk(folder: Path, depth: int) -> None:
        indent = "  " * depth
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            relative = path.relative_to(bundle).as_posix()
            if path.is_dir():
                lines.append(
                    f"{indent}<Directory Id={quoteattr(_id('d', relative))} "
                    f"Name={quoteattr(path.name)}>"
                )
                walk(path, depth + 1)
                lines.append(f"{indent}</Directory>")
            elif relative not in EXECUTABLES:
                component = _id("c", relative)
                components.append(component)
                source = _relative_to_root(path)
                lines.append(
                    f'{indent}<Component Id="{component}" Guid="*" Win64="yes">'
                    f"<File Id={quoteattr(_id('f', relative))} Name={quoteattr(path.name)} "
                    f'Source={quoteattr(source)} KeyPath="yes" /></Component>'
                )

    walk(bundle, 3)
    lines += ["    </DirectoryRef>", "  </Fragment>", "  <Fragment>"]
    lines.append('    <ComponentGroup Id="BundleFiles">')
    lines += [f'      <ComponentRef Id="{c}" />' for c in components]
    lines += ["    </ComponentGroup>", "  </Fragment>", "</Wix>", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path, help="the PyInstaller folder (Windows build)")
    source.add_argument("--placeholder", action="store_true", help="a staged placeholder tree")
    parser.add_argument("--out", type=Path, default=BUILD / "kyso-agent.msi")
    parser.add_argument("--version", default=agent_version())
    parser.add_argument(
        "--fragment-only",
        action="store_true",
        help="only write build/msi/files.wxs and texts.wxi (the WiX toolset builds on Windows)",
    )
    parser.add_argument(
        "--language",
        choices=sorted(MSI_LANGUAGES),
        help="the MSI's own texts: vi with --fragment-only (WiX), en for wixl (the default)",
    )
    args = parser.parse_args(argv)
    language = args.language or ("vi" if args.fragment_only else "en")

    BUILD.mkdir(parents=True, exist_ok=True)
    bundle = stage_placeholder(BUILD / "stage") if args.placeholder else args.bundle.resolve()
    files = BUILD / "files.wxs"
    files.write_text(fragment(bundle), encoding="utf-8")
    print(f"wrote {files}")
    texts = BUILD / "texts.wxi"
    texts.write_text(texts_include(language), encoding="utf-8")
    print(f"wrote {texts} ({language})")
    if args.fragment_only:
        return 0
    wixl = shutil.which("wixl")
    if wixl is None:
        print("wixl not found: install it (Debian: apt-get install wixl)", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # wixl knows no Property/@Secure (WiX puts those properties in SecureCustomProperties).
    source = BUILD / "kyso-agent.wixl.wxs"
    source.write_text(WXS.read_text(encoding="utf-8").replace(' Secure="yes"', ""), "utf-8")
    command = [
        wixl,
        "--arch",
        "x64",
        "--define",
        f"Version={args.version}",
        "--define",
        f"BundleDir={_relative_to_root(bundle)}",
        "--define",
        f"IconFile={_relative_to_root(ICON)}",
        "--includedir",
        str(BUILD),
        "--output",
        str(args.out),
        str(source),
        str(files),
    ]
    subprocess.run(command, check=True, cwd=ROOT)  # noqa: S603 - fixed tool and our own arguments
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
