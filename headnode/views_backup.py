"""The Backup page (admins): download a backup, upload one to restore. The page's
script calls the REST API (``api_backup``), under the same role checks."""
from __future__ import annotations

from flask import Blueprint, render_template

from headnode.auth import allow, caller
from headnode.views import PAGES

pages = Blueprint("backup_pages", __name__)


@pages.route("/admin/backup")
@allow("admin")
def backup():
    return render_template("backup.html", page="backup", title=PAGES["backup"][0], me=caller())
