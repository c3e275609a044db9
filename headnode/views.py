"""The web UI's pages. Each page is a template plus a script that talks to the
REST API (one service layer, one set of role checks); sign-in and sign-out are
plain forms so they work before any script runs."""
from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, abort, current_app, redirect, render_template, request
from flask_login import logout_user

from headnode.accesserrors import Locked, SignInFailed
from headnode.auth import EVERYONE, RUNNERS, allow, caller, public, sign_in

pages = Blueprint("pages", __name__)

# page name -> title; the help for each page is templates/help/<name>.html
PAGES = {"dashboard": "Dashboard", "job": "Job", "new_job": "New job", "password": "Change password",
         "users": "Users", "folders": "S3 folders", "worker_settings": "Worker settings", "mail": "Notifications",
         "backup": "Backup", "workers": "Workers", "logs": "Job logs", "audit": "Audit log", "signin": "Sign in"}


def render_page(name: str, **context):
    """The page ``name`` (templates/<name>.html) for the caller."""
    return render_template(f"{name}.html", page=name, title=PAGES[name], me=caller(), **context)


@pages.route("/signin", methods=["GET"])
@public
def signin_form():
    return render_template("signin.html", page="signin", title="Sign in", me=None,
                           next=_safe_next(request.args.get("next")), error=None)


@pages.route("/signin", methods=["POST"])
@public
def signin():
    accounts = current_app.extensions["cloudmover.accounts"]
    target = _safe_next(request.form.get("next"))
    try:
        user = accounts.authenticate(request.form.get("username", ""), request.form.get("password", ""),
                                     address=request.remote_addr)
    except (SignInFailed, Locked) as exc:
        status = 429 if isinstance(exc, Locked) else 401
        return render_template("signin.html", page="signin", title="Sign in", me=None, next=target,
                               error=str(exc), username=request.form.get("username", "")), status
    sign_in(user)
    return redirect("/account/password" if user.must_change_password else target)


@pages.route("/signout", methods=["POST"])
@allow(*EVERYONE, before_password_change=True)
def signout():
    logout_user()
    return redirect("/signin")


@pages.route("/account/password")
@allow(*EVERYONE, before_password_change=True)
def password():
    return render_page("password")


@pages.route("/")
@allow(*EVERYONE)
def dashboard():
    return render_page("dashboard")


@pages.route("/jobs/<int:job_id>")
@allow(*EVERYONE)
def job(job_id):
    return render_page("job", job_id=job_id)


@pages.route("/jobs/new")
@allow(*RUNNERS)
def new_job():
    return render_page("new_job")


@pages.route("/admin/users")
@allow("admin")
def users():
    return render_page("users")


@pages.route("/admin/folders")
@allow("admin")
def folders():
    return render_page("folders")


@pages.route("/admin/worker-settings")
@allow("admin")
def worker_settings():
    return render_page("worker_settings")


@pages.route("/admin/workers")
@allow("admin")
def workers():
    return render_page("workers")


@pages.route("/admin/logs")
@allow("admin")
def logs():
    return render_page("logs")


@pages.route("/admin/audit")
@allow("admin")
def audit():
    return render_page("audit")


@pages.route("/help/<name>")
@public
def help_page(name):
    if name not in PAGES:
        abort(404)
    return render_template(f"help/{name}.html", page=name, title=f"Help: {PAGES[name]}", me=caller(),
                           help_for=name)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a sign-in link must not bounce the user to another site."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target
