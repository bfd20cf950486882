"""Downloads the platform offers: the signing agent's MSI, from a folder IT configures.

The Sign page links here when the agent is not running (``sign_config``'s ``installer_url``).
The MSI is a release artifact (built on the Windows runner, .github/workflows/windows.yml), not
part of the platform's code, so it is served from ``KYSO_DOWNLOADS_DIR`` (config
``DOWNLOADS_DIR``); without it, or without the file there, the page says so and whom to ask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template, send_from_directory

from kyso.platform.i18n import translate
from kyso.platform.web import language

INSTALLER = "kyso-agent.msi"
MSI_MIMETYPE = "application/x-msi"

blueprint = Blueprint("downloads", __name__)


@blueprint.get(f"/downloads/{INSTALLER}")
def agent_installer() -> Any:
    folder = current_app.config.get("DOWNLOADS_DIR")
    if folder and (Path(folder) / INSTALLER).is_file():
        return send_from_directory(
            Path(folder).resolve(),
            INSTALLER,
            mimetype=MSI_MIMETYPE,
            as_attachment=True,
            max_age=300,  # a new release reaches the officers within minutes
        )
    lang = language()
    page = render_template(
        "error.html",
        title=translate("downloads.installer_missing_title", lang),
        message=translate("downloads.installer_missing", lang),
    )
    return page, 404
