"""One worker per target: a bounded queue, the target's rate limit, retries with
exponential backoff, and the dead-letter log for what cannot be delivered.

A message leaves the queue in exactly one of two ways: delivered (counted in
``messages_delivered_total``) or dead-lettered (``messages_dead_lettered_total`` and a line
in the dead-letter file; if even that write fails, the whole record goes to the error log
and ``dead_letter_errors_total``). A sink that hangs costs at most ``timeout`` per attempt.
On shutdown the worker keeps delivering for ``shutdown_grace``, then dead-letters the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass

import requests

from computewatch.alerts.bridge.config import DeliveryConfig
from computewatch.alerts.bridge.deadletter import DeadLetterLog
from computewatch.alerts.bridge.metrics import BridgeMetrics
from computewatch.alerts.bridge.payload import Notification
from computewatch.alerts.bridge.ratelimit import SlidingWindowLimiter
from computewatch.alerts.bridge.targets import Outcome, Prepared, Target

__all__ = ["Job", "TargetWorker", "backoff_delay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    receiver: str  # the bridge receiver the notification came in on
    notification: Notification
    received: float  # time.time() when the bridge accepted it


def backoff_delay(attempt: int, config: DeliveryConfig, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: doubling from ``backoff`` with ±25% jitter
    (so many targets do not retry in step), at least the target's Retry-After, and never
    more than ``max_backoff``."""
    base = config.backoff * 2 ** (attempt - 1)
    jitter = 0.75 + 0.5 * (rng or random).random()
    return min(config.max_backoff, max(base * jitter, retry_after or 0.0))


def _oserror_text(exc: BaseException) -> str:
    """The innermost OS-level reason (e.g. "Connection refused"), never a URL."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in current.args if isinstance(a, BaseException)), None)
        current = nxt or current.__cause__ or current.__context__
        seen += 1
    return type(exc).__name__


class TargetWorker:
    def __init__(self, target: Target, delivery: DeliveryConfig, metrics: BridgeMetrics,
                 dead_letters: DeadLetterLog, limiter: SlidingWindowLimiter | None = None,
                 session: requests.Session | None = None) -> None:
        self.target = target
        self.delivery = delivery
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.limiter = limiter
        self.session = session or requests.Session()
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=delivery.queue_size)
        self._labels = {"target": target.name, "kind": target.kind}
        self._stop = threading.Event()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"bridge-{target.name}",
                                        daemon=True)
        metrics.queue_depth.labels(**self._labels).set_function(self.queue.qsize)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Job) -> bool:
        """Queue a notification; False when the queue is full or the worker is closing."""
        if self._closing:
            return False
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    @property
    def closing(self) -> bool:
        return self._closing

    def has_room(self) -> bool:
        return not self._closing and not self.queue.full()

    def close(self, grace_s: float | None = None) -> None:
        """Deliver what is queued for up to ``grace_s``, then dead-letter what is left."""
        self._closing = True
        grace_s = self.delivery.shutdown_grace if grace_s is None else grace_s
        deadline = time.monotonic() + grace_s
        while (self._busy or not self.queue.empty()) and time.monotonic() < deadline:
            if not self.alive:
                break
            time.sleep(0.02)
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=self.delivery.timeout + 5)
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            self.dead_letter(job, None, "shutdown", 0, "bridge stopped before delivery")
        self.session.close()

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            self._busy = True
            try:
                self._deliver(job)
            except Exception as exc:  # a bug must not lose the message or kill the worker
                log.exception("target %s: unexpected error delivering a notification",
                              self.target.name)
                self.dead_letter(job, None, "internal_error", 0, type(exc).__name__)
            finally:
                self._busy = False
                self.queue.task_done()

    def _deliver(self, job: Job) -> None:
        try:
            prepared = self.target.prepare(job.notification)
        except Exception as exc:
            log.exception("target %s: cannot render the notification", self.target.name)
            self.dead_letter(job, None, "render_error", 0, type(exc).__name__)
            return
        if prepared.message.truncated:
            self.metrics.truncated.labels(**self._labels).inc()
        last: Outcome | None = None
        attempts = self.delivery.max_attempts
        for attempt in range(1, attempts + 1):
            if self.limiter is not None:
                acquired, waited = self.limiter.acquire(self._stop)
                if waited > 0:
                    self.metrics.rate_limit_waits.labels(**self._labels).inc()
                if not acquired:
                    self.dead_letter(job, prepared, "shutdown", attempt - 1,
                                      last.detail if last else "stopped while rate limited")
                    return
            outcome = self._attempt(prepared)
            if outcome.ok:
                self.metrics.delivered.labels(**self._labels).inc()
                log.info("target %s: delivered %s notification for %s (attempt %d, %.2f s "
                         "after receipt)", self.target.name, job.notification.status,
                         job.receiver, attempt, time.time() - job.received)
                return
            last = outcome
            self.metrics.failures.labels(**self._labels, reason=outcome.reason).inc()
            log.warning("target %s: attempt %d/%d failed: %s (%s)", self.target.name, attempt,
                        attempts, outcome.reason, outcome.detail)
            if not outcome.retry or attempt == attempts:
                break
            self.metrics.retries.labels(**self._labels, reason=outcome.reason).inc()
            if self._stop.wait(backoff_delay(attempt, self.delivery, outcome.retry_after)):
                self.dead_letter(job, prepared, "shutdown", attempt, outcome.detail)
                return
        assert last is not None
        self.dead_letter(job, prepared, last.reason, attempt, last.detail)

    def _attempt(self, prepared: Prepared) -> Outcome:
        req = self.target.request(prepared, time.time())
        timeout = self.delivery.timeout
        try:
            resp = self.session.post(req.url, data=req.body, headers=req.headers,
                                     timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            return Outcome(False, True, "timeout", f"no answer within {timeout:g} s")
        except requests.ConnectionError as exc:
            return Outcome(False, True, "connection_error", _oserror_text(exc))
        except requests.RequestException as exc:
            return Outcome(False, True, "request_error", type(exc).__name__)
        outcome = self.target.outcome(resp.status_code, resp.content, resp.headers)
        return dataclasses.replace(outcome, detail=self.target.redact(outcome.detail))

    def dead_letter(self, job: Job, prepared: Prepared | None, reason: str, attempts: int,
                     error: str) -> None:
        record = {"receiver": job.receiver, "target": self.target.name,
                  "kind": self.target.kind, "reason": reason, "attempts": attempts,
                  "error": self.target.redact(error),
                  "received": job.received,
                  "message": None if prepared is None else {
                      "title": prepared.message.title, "text": prepared.message.text},
                  "notification": job.notification.raw}
        self.metrics.dead_lettered.labels(**self._labels, reason=reason).inc()
        try:
            self.dead_letters.write(record)
        except (OSError, TypeError, ValueError) as exc:
            self.metrics.dead_letter_errors.labels(**self._labels).inc()
            log.error("target %s: cannot write the dead-letter log %s (%s); the record: %r",
                      self.target.name, self.dead_letters.path, exc, record)
        else:
            log.error("target %s: gave up on a %s notification for %s after %d attempts "
                      "(%s: %s); written to %s", self.target.name, job.notification.status,
                      job.receiver, attempts, reason, record["error"], self.dead_letters.path)
