"""The Notifications page (System settings → Notifications): outgoing mail settings
and a test message; its script talks to ``/api/v1/mail-settings``."""
from __future__ import annotations

from flask import Blueprint

from headnode.auth import allow
from headnode.views import render_page

pages = Blueprint("mail_pages", __name__)


@pages.route("/admin/mail")
@allow("admin")
def mail():
    return render_page("mail")
