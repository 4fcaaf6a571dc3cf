"""The twistd plugin ``smtptut-queue``: the delivery queue's runner as a service."""

from twisted.application.service import ServiceMaker

smtptutQueue = ServiceMaker(
    "smtptut-queue",
    "smtptut.queue.tap",
    "smtptut's delivery queue runner: retries, backoff and DSNs",
    "smtptut-queue",
)
