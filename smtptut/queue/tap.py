"""``twistd smtptut-queue``: the queue runner as a service, its options from the queue's table."""

from __future__ import annotations

import os
from typing import cast

from twisted.application import service
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.python import usage

from smtptut.queue.outbound import clientSettings
from smtptut.queue.runner import QueueService, clientRunner
from smtptut.queue.settings import QUEUE_SETTINGS, readQueueSettings
from smtptut.queue.store import Queue
from smtptut.settings import ConfigError, optParameters
from smtptut.twistdlog import LoggedService


class Options(usage.Options):
    """
    One option per C{SMTPTUT_QUEUE*} setting; the client's C{SMTPTUT_*}
    settings (port, relay, TLS, nameservers...) come from the environment.
    """

    synopsis = "--queue DIR [options]"
    longdesc = (
        "The smtptut queue runner: delivers the messages smtptut send --queue"
        " queued, retries deferred recipients on a backoff schedule and sends"
        " the sender a DSN when a recipient fails for good or the message"
        " grows too old.  It delivers as smtptut send does, with the SMTPTUT_*"
        " client settings in its environment."
    )
    optParameters = optParameters(QUEUE_SETTINGS)

    def postOptions(self) -> None:
        given = {
            s.variable: self[s.optionName]
            for s in QUEUE_SETTINGS
            if self[s.optionName] is not None
        }
        try:
            settings = readQueueSettings(os.environ, given)
            named = "--queue" if "SMTPTUT_QUEUE" in given else "SMTPTUT_QUEUE"
            settings.requireDirectory(named)
            self["settings"] = settings
            self["client"] = clientSettings(os.environ)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> service.IService:
    """
    The queue runner for the parsed C{options}, on the global reactor.
    """
    from twisted.internet import reactor as globalReactor

    reactor = cast(IReactorCore, globalReactor)
    settings = options["settings"]
    try:
        queue = Queue(settings.requireDirectory(), IReactorTime(reactor))
    except OSError as e:
        raise usage.UsageError(f"--queue: {e.filename}: {e.strerror}") from None
    runner = clientRunner(reactor, queue, settings, options["client"])
    # The sink's cheap observer, where twistd's options say (smtptut.twistdlog).
    logged = LoggedService(options.parent)
    QueueService(runner, IReactorTime(reactor)).setServiceParent(logged)
    return logged
