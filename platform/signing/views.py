"""The signing page "Ký duyệt chứng nhận tiêm" (filled in by the signing-page work)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from kyso.platform.auth.access import roles_required
from kyso.platform.models import Role

blueprint = Blueprint("signing", __name__, url_prefix="/signing")


@blueprint.get("/")
@roles_required(Role.SIGNING_OFFICER)
def search() -> Any:
    return render_template("signing/search.html")
