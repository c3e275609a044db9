"""Jobs that integrators send as messages to the submission queue.

Every message gets an answer on the reply queue: ``JobAccepted`` with the new
job's id, or ``SubmissionRejected`` saying what was wrong (not JSON, unknown
field, bad location, missing bucket…). A message is acknowledged only after
its answer is published, so nothing is dropped silently.
"""
from __future__ import annotations

import logging

from pipeline import bus as busmod
from pipeline import errors, messages
from headnode.jobs import JobService

log = logging.getLogger("cloudmover.submissions")


class SubmissionConsumer:
    def __init__(self, service: JobService, bus: busmod.Bus):
        self.service, self.bus = service, bus

    def handle(self, delivery: busmod.Delivery) -> None:
        request_id = None
        try:
            raw = delivery.json()
            request_id = raw.get("request_id") if isinstance(raw, dict) else None
            request_id = request_id if isinstance(request_id, str) else None
            submission = messages.load(raw, messages.SUBMISSIONS)
            job = self.service.create(
                source=submission["source"], destination=submission["destination"], move=submission["move"],
                recursive=submission["recursive"], sync=submission["sync"], tier=submission["tier"],
                codec=submission["codec"],
                name=submission["name"], endpoint_url=submission["endpoint_url"],
                submitted_by=submission["submitted_by"] or "submission-queue")
            reply = messages.build("JobAccepted", request_id=request_id, job_id=job.id)
        except errors.PermanentError as exc:
            log.warning("submission rejected: %s", exc)
            reply = messages.build("SubmissionRejected", request_id=request_id, reason=str(exc),
                                   errors=getattr(exc, "errors", {}), received=delivery.raw[:2000])
        self.bus.publish(busmod.SUBMISSION_REPLIES, reply)
        delivery.ack()
