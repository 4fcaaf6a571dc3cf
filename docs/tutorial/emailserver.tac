# Copyright (c) Twisted Matrix Laboratories.
# See LICENSE for details.

# You can run this module directly with:
#    twistd -ny emailserver.tac
#
# smtptut: the tutorial's console server, changed only where Python 3 and
# current Twisted need it (each change says "Python 3:") and where smtptut
# lets you choose the port and the recipients (each says "smtptut:"):
#
#    SMTPTUT_LISTEN=tcp:2525:interface=127.0.0.1 twistd --pidfile= -ny emailserver.tac

"""
A toy email server.
"""
from __future__ import print_function  # Python 3: a no-op now, kept as the tutorial has it

import os

from zope.interface import implementer

from twisted.internet import defer
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm
from twisted.cred.portal import Portal

# smtptut: the local parts taken, comma-separated (the tutorial's "console" by
# default).  Python 3: Twisted hands the server addresses as bytes, so encode.
ACCEPT = [part.strip().encode() for part in os.environ.get("SMTPTUT_ACCEPT", "console").split(",")]


@implementer(smtp.IMessageDelivery)
class ConsoleMessageDelivery:
    def receivedHeader(self, helo, origin, recipients):
        # Python 3: the header is handed to lineReceived with the message's
        # other lines, which are bytes, so it must be bytes too.  (Before this
        # change: eomReceived's join fails with "TypeError: sequence item 1:
        # expected str instance, bytes found".)
        return b"Received: ConsoleMessageDelivery"


    def validateFrom(self, helo, origin):
        # All addresses are accepted
        return origin


    def validateTo(self, user):
        # Only messages directed to the "console" user are accepted.
        # Python 3: user.dest.local is bytes (b"console"); the tutorial's
        # == "console" is never true on Python 3, so every recipient is refused.
        if user.dest.local in ACCEPT:
            return lambda: ConsoleMessage()
        raise smtp.SMTPBadRcpt(user)



@implementer(smtp.IMessage)
class ConsoleMessage:
    def __init__(self):
        self.lines = []


    def lineReceived(self, line):
        self.lines.append(line)


    def eomReceived(self):
        print("New message received:")
        # Python 3: the lines are bytes; join them as bytes, decode to print.
        print(b"\n".join(self.lines).decode("utf-8", "replace"))
        self.lines = None
        return defer.succeed(None)


    def connectionLost(self):
        # There was an error, throw away the stored lines
        self.lines = None



class ConsoleSMTPFactory(smtp.SMTPFactory):
    protocol = smtp.ESMTP

    def __init__(self, *a, **kw):
        smtp.SMTPFactory.__init__(self, *a, **kw)
        self.delivery = ConsoleMessageDelivery()


    def buildProtocol(self, addr):
        p = smtp.SMTPFactory.buildProtocol(self, addr)
        p.delivery = self.delivery
        # Python 3: the mechanism names are bytes (b"LOGIN"): Twisted joins
        # them into its EHLO reply and looks up what the client sends.  With
        # the tutorial's str keys every EHLO fails with "TypeError: sequence
        # item 0: expected a bytes-like object, str found".
        p.challengers = {b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials}
        return p



@implementer(IRealm)
class SimpleRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, ConsoleMessageDelivery(), lambda: None
        raise NotImplementedError()



def main():
    from twisted.application import internet
    from twisted.application import service
    from twisted.application import strports

    portal = Portal(SimpleRealm())
    checker = InMemoryUsernamePasswordDatabaseDontUse()
    # Python 3: AUTH hands the checker the name and password as bytes.
    checker.addUser(b"guest", b"password")
    portal.registerChecker(checker)

    a = service.Application("Console SMTP Server")
    # smtptut: where to listen is a Twisted endpoint string from SMTPTUT_LISTEN;
    # the default "tcp:25" is the tutorial's internet.TCPServer(25, ...).
    listen = os.environ.get("SMTPTUT_LISTEN", "tcp:25")
    strports.service(listen, ConsoleSMTPFactory(portal)).setServiceParent(a)

    return a

application = main()
