"""The audit log: who signed in, changed users or folders, or acted on jobs.

One row per action, written by the services (never by views), so the API and
the UI leave the same trail. Details never carry a secret.
"""
from __future__ import annotations

import logging

from headnode.models import AuditEvent

log = logging.getLogger("cloudmover.audit")


def record(actor: str | None, action: str, target: str | None = None, detail: str | None = None,
           address: str | None = None) -> None:
    AuditEvent.create(actor=actor, action=action, target=target, detail=detail, address=address)
    log.info("audit: %s %s %s %s", actor or "system", action, target or "", detail or "")


def recent(*, limit: int = 200, offset: int = 0, action: str | None = None, actor: str | None = None):
    query = AuditEvent.select().order_by(AuditEvent.id.desc())
    if action:
        query = query.where(AuditEvent.action == action)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    return list(query.limit(limit).offset(offset))
