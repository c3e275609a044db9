"""The Notifications page (System settings → Notifications): outgoing mail settings
and a test message; its script talks to ``/api/v1/mail-settings``."""
from __future__ import annotations

from flask import Blueprint, render_template

from headnode.auth import allow, caller
from headnode.views import PAGES

pages = Blueprint("mail_pages", __name__)


@pages.route("/admin/mail")
@allow("admin")
def mail():
    return render_template("mail.html", page="mail", title=PAGES["mail"][0], me=caller())
