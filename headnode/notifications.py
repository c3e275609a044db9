"""Emails about finished jobs, sent from a thread of their own.

When a job ends complete, complete with warnings or failed, the users named in
its ``notify`` option (chosen at submission) who have an email address each get
one message: the outcome, the counts, the first errors and a link to the job.
``Notifier.job_finished`` only queues the job's id, so the loop that closed the
job never waits for a mail server. The sender thread claims the job
(``Job.notified_at``) before sending, so a job is notified at most once; a
failure to send goes to the job's log and the server log and is not retried.
At start the thread also takes up jobs that finished in the last day without
being notified (the node stopped in between).

Job logs are visible to every user, so they name recipients by user name,
never by email address.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading

from headnode import models
from headnode.mail import MailFailed, MailService, Outgoing, one_line, public_url
from headnode.models import Job, ObjectFailure, User

log = logging.getLogger("cloudmover.notifications")

NOTIFY_STATES = ("complete", "complete_with_warnings", "failed")
OUTCOMES = {"complete": "completed", "complete_with_warnings": "completed with warnings", "failed": "failed"}
FIRST_ERRORS = 10
RECOVER_WITHIN = dt.timedelta(days=1)
STOP_SECONDS = 30.0


def recipients() -> list[dict]:
    """Active users and whether they have an email address: whom a job's submitter may choose
    to tell. Addresses stay out: choosing needs only the name."""
    return [{"username": user.username, "has_email": bool(user.email)}
            for user in User.select(User.username, User.email).where(User.active).order_by(User.username)]


class Notifier:
    def __init__(self, mail: MailService):
        self.mail = mail
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> "Notifier":
        self._stopping.clear()
        cutoff = models.now() - RECOVER_WITHIN
        for job in Job.select(Job.id).where(Job.notified_at.is_null() & Job.state.in_(NOTIFY_STATES)
                                            & (Job.finished_at >= cutoff)).order_by(Job.id):
            self.job_finished(job.id)
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Finish the message being sent; jobs still queued are taken up at the next start."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def job_finished(self, job_id: int) -> None:
        """Queue ``job_id`` for its notification (cheap; called by the loop that closed the job)."""
        with self._idle:
            self._pending += 1
        self._queue.put(job_id)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued job has been handled; False if that took over ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self.notify(job_id)
            except Exception:   # a database error or a bug: logged in full, and the next job is still told
                log.exception("the notification of job %s failed", job_id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    # -- one job --------------------------------------------------------------------
    def notify(self, job_id: int) -> None:
        """Email the users chosen at submission about the job's outcome, unless that was done before."""
        if not _claim(job_id):
            return
        job = Job.get_by_id(job_id)
        names = [name for name in job.options.get("notify") or [] if isinstance(name, str)]
        if not names:
            return
        reachable, unreachable = _chosen_users(names)
        if unreachable:
            models.log(job, "not emailed about the outcome: " + ", ".join(unreachable), "warning")
        if not reachable:
            return
        if self.mail.settings() is None:
            self._failed(job, [user.username for user in reachable],
                         "outgoing mail is not configured (System settings → Notifications)")
            return
        subject, body = job_subject(job), job_body(job, public_url(self.mail.config))
        messages = [Outgoing(to=user.email, subject=subject, body=body, recipient=user.username)
                    for user in reachable]
        try:
            undelivered = self.mail.deliver(messages)
        except MailFailed as exc:
            self._failed(job, [user.username for user in reachable], str(exc))
            return
        failed = {message.recipient for message, _ in undelivered}
        sent = [message.recipient for message in messages if message.recipient not in failed]
        if sent:
            models.log(job, f"outcome emailed to {', '.join(sent)}")
        for message, reason in undelivered:
            self._failed(job, [message.recipient], reason)

    @staticmethod
    def _failed(job: Job, names: list[str], reason: str) -> None:
        models.log(job, f"could not email {', '.join(names)} about the outcome: {reason}", "warning")
        log.warning("job %s: could not email %s about the outcome: %s", job.id, ", ".join(names), reason)


def _claim(job_id: int) -> bool:
    """Mark the job notified; False if it was already, or has not ended in a state that notifies."""
    return Job.update(notified_at=models.now()).where(
        (Job.id == job_id) & Job.notified_at.is_null() & Job.state.in_(NOTIFY_STATES)).execute() == 1


def _chosen_users(names: list[str]) -> tuple[list[User], list[str]]:
    """The chosen users who can be emailed, and why each of the others cannot."""
    found = {user.username: user for user in User.select().where(User.username.in_(names))}
    reachable, unreachable = [], []
    for name in dict.fromkeys(names):
        user = found.get(name)
        if user is None:
            unreachable.append(f"{name} (no such user)")
        elif not user.active:
            unreachable.append(f"{name} (suspended)")
        elif not user.email:
            unreachable.append(f"{name} (no email address)")
        else:
            reachable.append(user)
    return reachable, unreachable


# -- the message --------------------------------------------------------------------
def job_subject(job: Job) -> str:
    return f'CloudMover: job "{one_line(job.name, 150)}" {OUTCOMES[job.state]}'


def job_body(job: Job, base_url: str) -> str:
    failures = ObjectFailure.select().where((ObjectFailure.job == job) & ~ObjectFailure.retried)
    first = list(failures.order_by(ObjectFailure.id).limit(FIRST_ERRORS))
    total = failures.count()
    lines = [f"Job {job.id}, \"{one_line(job.name, 200)}\", {OUTCOMES[job.state]}.", "",
             f"Source:        {one_line(job.source_url)}",
             f"Destination:   {one_line(job.destination_url)}",
             f"Mode:          {'move' if job.options.get('move') else 'copy'}",
             f"Submitted by:  {job.submitted_by or '(the operator)'}",
             f"Started:       {_when(job.started_at)}",
             f"Finished:      {_when(job.finished_at)}", "",
             f"Objects copied:           {job.objects_done:,}",
             f"Objects already present:  {job.objects_skipped:,}",
             f"Objects failed:           {job.objects_failed:,}"]
    if job.options.get("move"):
        lines += [f"Sources deleted:          {job.objects_deleted:,}",
                  f"Sources kept (warnings):  {job.delete_failures:,}"]
    lines.append(f"Bytes copied:             {job.bytes_done:,} ({_size(job.bytes_done)})")
    if job.error:
        lines += ["", f"Reason: {one_line(job.error)}"]
    if first:
        lines += ["", f"First errors ({len(first)} of {total}):"]
        lines += [_error_line(failure) for failure in first]
        if total > len(first):
            lines.append(f"  … and {total - len(first)} more: see the job.")
    lines += ["", f"The job: {base_url}/jobs/{job.id}", "",
              "You get this message because you were chosen to be told when this job ends.", ""]
    return "\n".join(lines)


def _error_line(failure: ObjectFailure) -> str:
    reason = one_line(failure.reason, 300)
    if failure.kind == "delete" and not reason.startswith("source kept"):
        reason = f"source kept: {reason}"   # a move's delete failed: a warning, the copy is there
    return f"  {one_line(failure.key, 300)}: {reason}"


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "–"


def _size(count: int) -> str:
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
