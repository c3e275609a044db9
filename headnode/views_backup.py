"""The Backup page (admins): download a backup, upload one to restore. The page's
script calls the REST API (``api_backup``), under the same role checks."""
from __future__ import annotations

from flask import Blueprint

from headnode.auth import allow
from headnode.views import render_page

pages = Blueprint("backup_pages", __name__)


@pages.route("/admin/backup")
@allow("admin")
def backup():
    return render_page("backup")
