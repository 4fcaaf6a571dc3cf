"""The twistd plugin ``smtptut-server``: the console server as a mail sink."""

from twisted.application.service import ServiceMaker

smtptutServer = ServiceMaker(
    "smtptut-server",
    "smtptut.server.tap",
    "smtptut's console ESMTP server: a development mail sink",
    "smtptut-server",
)
