"""``cloudmover cp`` through a running head node: its REST API, as the CLI uses it.

A head node that is already serving (``cloudmover up``, or one in AWS) has its
workers running: a job sent to it starts copying at once, without the seconds
an embedded head node spends starting. The job then shows in the head node's
history like any other. Authentication is an API token (a user's ``cm_…``
token, or the node's own ``DATA_DIR/api.token``), never a password; a head node
with a self-signed certificate is trusted by naming that certificate
(``DATA_DIR/tls/cert.pem``) as the CA file.

``RemoteJobs`` answers what ``progress.watch`` and the CLI's report ask of the
in-process job service, so both paths show the same bar and summary.
"""
from __future__ import annotations

import datetime as dt
import json
import ssl
import urllib.error
import urllib.request
from types import SimpleNamespace

class RemoteError(Exception):
    """The head node refused a request, or could not be reached; the message says why."""


class RemoteJobs:
    def __init__(self, url: str, token: str, *, ca_file: str | None = None, timeout: float = 60.0):
        self.base = url.rstrip("/") + "/api/v1"
        self._token, self._timeout = token, timeout
        try:
            self._tls = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
        except (OSError, ssl.SSLError) as exc:
            raise RemoteError(f"cannot use {ca_file} as the head node's certificate: {exc}") from None

    def create(self, **fields) -> SimpleNamespace:
        return _job(self._call("POST", "/jobs", fields))

    def await_finish(self, job_id: int, *, timeout: float) -> SimpleNamespace:
        """The job once it has finished, or as it stands after ``timeout`` seconds (a long poll)."""
        return _job(self._call("GET", f"/jobs/{job_id}?wait={timeout:g}"))

    def failures(self, job_id: int, *, limit: int = 100) -> list[SimpleNamespace]:
        return [SimpleNamespace(**f) for f in self._call("GET", f"/jobs/{job_id}/failures?limit={limit}")]

    def cancel(self, job_id: int) -> None:
        self._call("POST", f"/jobs/{job_id}/cancel", {})

    def _call(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._tls) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:
            raise RemoteError(_refusal(exc)) from None
        except (urllib.error.URLError, ConnectionError, ssl.SSLEOFError) as exc:   # not there, or gone mid-answer
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RemoteError(f"the head node's certificate is not trusted ({reason.verify_message}); "
                                  "name its certificate with --ca-file (DATA_DIR/tls/cert.pem on the head node)") \
                    from None
            raise RemoteError(f"cannot reach the head node at {self.base}: {reason}") from None
        except (OSError, ValueError) as exc:   # a timeout, or an answer that is not JSON
            raise RemoteError(f"the head node at {self.base} did not answer properly: {exc}") from None


def _refusal(exc: urllib.error.HTTPError) -> str:
    """What the head node said, from its error body (a failed pre-flight lists what to fix)."""
    try:
        message = json.loads(exc.read() or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return message or f"HTTP {exc.code} {exc.reason}"


def _job(found: dict) -> SimpleNamespace:
    """A job as the API shows it, with the datetimes parsed and ``finished`` as the model has it
    (every way a job ends sets its ``finished_at``)."""
    job = SimpleNamespace(**found)
    for name in ("created_at", "started_at", "finished_at"):
        value = getattr(job, name, None)
        setattr(job, name, dt.datetime.fromisoformat(value) if value else None)
    job.finished = job.finished_at is not None
    return job
