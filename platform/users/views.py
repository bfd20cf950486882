"""User management (filled in by the user-management work)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from kyso.platform.auth.access import login_required

blueprint = Blueprint("users", __name__, url_prefix="/users")


@blueprint.get("/")
@login_required
def index() -> Any:
    return render_template("users/index.html", users=[])
