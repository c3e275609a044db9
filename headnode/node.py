"""The running head node: database, bus and the background loops.

Loops (threads): planning; events (worker events into job progress);
submissions (integrators' jobs); housekeeping (dead-letter queues, worker
fleet); notifications (emails about finished jobs). ``cloudmover serve``/``up`` run them beside the web server;
``cloudmover cp`` runs them in-process.
"""
from __future__ import annotations

import logging
import threading

from pipeline import bus as busmod
from pipeline import errors, messages
from pipeline.credentials import Sealer
from pipeline.events_topic import events_topic_wanted
from headnode import models
from headnode.aggregator import Aggregator
from headnode.config import ensure_data_dir, ensure_secret, load_config
from headnode.datadir import hold_data_dir
from headnode.demand import JobDemand
from headnode.fleet import LocalFleet, local_fleet
from headnode.jobs import JobService
from headnode.mail import MailService
from headnode.models import FINAL_STATES, Job
from headnode.notifications import Notifier
from headnode.planning import Planner
from headnode.submissions import SubmissionConsumer

log = logging.getLogger("cloudmover.headnode")
POLL_SECONDS = 0.02           # one receive's wait on a loop's queue (on the on-disk bus a stop ends it at once)
PLAN_POLL_SECONDS = 0.2       # for jobs created elsewhere; one created by this process wakes planning at once
HOUSEKEEPING_SECONDS = 0.25   # fleet checks: workers start soon after a job does
DEAD_LETTER_EVERY = 8         # housekeeping rounds between dead-letter checks (about 2 s)


class HeadNode:
    def __init__(self, config: dict | None = None, *, fleet: LocalFleet | None = None):
        """``fleet``: worker processes already started for this node (``cloudmover cp`` starts
        them before loading the head node); by default the one the config asks for."""
        self.config = load_config(config)
        ensure_data_dir(self.config)
        self.data_dir_lock = hold_data_dir(self.config)   # first applies a restore staged for this start
        secret = ensure_secret(self.config, "SECRET_KEY", "secret.key")
        self.database = models.connect(self.config["DATABASE"])
        self.bus = busmod.Bus(busmod.BusConfig(
            url=self.config["BUS_URL"], transport_options=self.config["BUS_OPTIONS"],
            prefix=self.config["QUEUE_PREFIX"], visibility_timeout=self.config["VISIBILITY_TIMEOUT"],
            max_receives=self.config["MAX_RECEIVES"], retention_seconds=self.config["MESSAGE_RETENTION"],
            events_topic=events_topic_wanted(self.config["BUS_URL"], self.config["EVENTS_TOPIC"])))
        self.service = JobService(self.config, Sealer(secret), self.bus)
        self.mail = MailService(self.config, Sealer(secret))
        self.notifier = Notifier(self.mail)   # emails finished jobs' outcomes from a thread of its own
        self.service.finished_hooks.append(self.notifier.job_finished)
        self.stopping = threading.Event()
        self.planner = Planner(self.service, page_size=self.config["LIST_PAGE_SIZE"], stopping=self.stopping)
        self.aggregator = Aggregator(self.service)
        self.submissions = SubmissionConsumer(self.service, self.bus)
        self.fleet = fleet if fleet is not None else self._default_fleet()
        self._threads: list[threading.Thread] = []

    def _default_fleet(self):
        """The fleet provider the config asks for: local processes, EC2 instances, or none."""
        if self.config["FLEET"] == "ec2":
            from headnode.ec2fleet import ec2_fleet   # boto3 only where instances are launched
            return ec2_fleet(self.config, queue_size=lambda region: self.bus.size(busmod.task_queue(region)))
        return local_fleet(self.config)

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> "HeadNode":
        for queue in (busmod.EVENTS, busmod.SUBMISSIONS, busmod.SUBMISSION_REPLIES):
            self.bus.ensure(queue)
        self.planner.resume_unsent()
        self.notifier.start()
        for name, loop in (("planning", self._planning), ("events", self._events),
                           ("submissions", self._submissions), ("housekeeping", self._housekeeping)):
            thread = threading.Thread(target=self._guard, args=(name, loop), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def halt(self) -> None:
        """Tell every loop to end after the step at hand (planning: after the listing page at hand)."""
        self.stopping.set()
        self.service.plan_requested.set()   # the planning loop waits on it

    def stop(self) -> None:
        self.halt()
        if self.fleet:   # workers wind down while the loops do
            self.fleet.stop_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self.notifier.stop()
        self.service.close()
        self.database.close()
        self.data_dir_lock.release()

    def _guard(self, name: str, loop) -> None:
        """Run ``loop`` until stopping; a crash is logged and the loop restarted."""
        while not self.stopping.is_set():
            try:
                loop()
            except Exception:
                log.exception("%s loop failed; restarting it", name)
                self.stopping.wait(1.0)
        self.bus.close()

    # -- loops ------------------------------------------------------------------------
    def _planning(self) -> None:
        requested = self.service.plan_requested
        while not self.stopping.is_set():
            requested.clear()   # before looking: a job created from here on wakes the wait below
            if not self.planner.step():
                requested.wait(PLAN_POLL_SECONDS)

    def _events(self) -> None:
        while not self.stopping.is_set():
            delivery = self.bus.receive(busmod.EVENTS, timeout=POLL_SECONDS, stop=self.stopping)
            if delivery is None:
                continue
            try:
                event = messages.load(delivery.json(), messages.EVENTS)
            except errors.MalformedMessage as exc:   # kept for inspection, never dropped
                log.error("malformed event moved to the dead-letter queue: %s: %.500s", exc, delivery.raw)
                self.bus.publish(self.bus.dead_letter(busmod.EVENTS), {"malformed": str(exc),
                                                                       "raw": delivery.raw[:100_000]})
                delivery.ack()
                continue
            self.aggregator.apply(event)
            delivery.ack()

    def _submissions(self) -> None:
        while not self.stopping.is_set():
            delivery = self.bus.receive(busmod.SUBMISSIONS, timeout=POLL_SECONDS, stop=self.stopping)
            if delivery is not None:
                self.submissions.handle(delivery)

    def _housekeeping(self) -> None:
        beats = 0
        while True:
            regions = self._active_regions()
            if beats % DEAD_LETTER_EVERY == 0:
                for region in self._known_regions():
                    self._drain_dead_letters(region)
            beats += 1
            if self.fleet:
                for region, death in self.fleet.reconcile(regions):
                    self._report_death(region, death)
            if self.stopping.wait(HOUSEKEEPING_SECONDS):
                return

    def _active_regions(self) -> dict[str, list[JobDemand]]:
        """Region -> what each of its unfinished jobs asks of the fleet, oldest job first."""
        demand: dict[str, list[JobDemand]] = {}
        query = (Job.select(Job.id, Job.region, Job.options, Job.largest_object, Job.plan_marker,
                            Job.planning_done)
                 .where(Job.state.not_in(FINAL_STATES)).order_by(Job.id))
        for job in query:
            demand.setdefault(job.region, []).append(JobDemand(
                job_id=job.id, tier=job.options["tier"], codec=job.options.get("codec", "none"),
                largest_object=job.largest_object, planned=job.plan_marker is not None or job.planning_done))
        return demand

    def _known_regions(self) -> list[str]:
        """Every region a job ever used: a task may reach a dead-letter queue late."""
        return [job.region for job in Job.select(Job.region).distinct()]

    def _report_death(self, region: str, death: str) -> None:
        """Make a crashing worker visible where its jobs are watched, not only in its log."""
        log.warning("region %s: %s", region, death)
        for job in Job.select().where((Job.region == region) & Job.state.not_in(FINAL_STATES)):
            models.log(job, death, "warning")

    def _drain_dead_letters(self, region: str) -> None:
        dead_letter = self.bus.dead_letter(busmod.task_queue(region))
        while (delivery := self.bus.receive(dead_letter, timeout=0.1)) is not None:
            try:
                body = delivery.json()
            except errors.MalformedMessage:
                body = {"raw": delivery.raw}
            self.aggregator.dead_lettered(body)
            delivery.ack()
