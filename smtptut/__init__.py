"""smtptut: the Twisted Mail SMTP tutorial made into working software."""

from __future__ import annotations

import sys

# typing.TYPE_CHECKING without importing typing, which would double the time
# "import smtptut" takes; mypy treats any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from smtptut.client.delivery import deliverAll
    from smtptut.client.exchange import getMailExchange
    from smtptut.client.model import Envelope, RecipientOutcome, Status, TLSPolicy
    from smtptut.client.protocol import SMTPClientFactory, SMTPTutorialClient
    from smtptut.client.settings import ClientSettings
    from smtptut.server.delivery import ConsoleMessageDelivery
    from smtptut.server.factory import ConsoleSMTPFactory
    from smtptut.server.protocol import ConsoleESMTP
    from smtptut.server.realm import SimpleRealm
    from smtptut.server.service import makeServerService
    from smtptut.server.settings import AcceptPolicy, ServerSettings
    from smtptut.settings import ConfigError

    __version__: str

# Each public name and the module it lives in.  The modules are imported on
# first use (PEP 562), so that "import smtptut" (and so the smtptut command,
# whose every run imports this package) loads neither side's code.
_HOMES = {
    # the sending side: settings -> lookup -> delivery -> report
    "ClientSettings": "smtptut.client.settings",
    "Envelope": "smtptut.client.model",
    "RecipientOutcome": "smtptut.client.model",
    "Status": "smtptut.client.model",
    "TLSPolicy": "smtptut.client.model",
    "getMailExchange": "smtptut.client.exchange",
    "SMTPTutorialClient": "smtptut.client.protocol",
    "SMTPClientFactory": "smtptut.client.protocol",
    "deliverAll": "smtptut.client.delivery",
    # the receiving side: bytes -> framing -> session -> delivery -> storage
    "ServerSettings": "smtptut.server.settings",
    "AcceptPolicy": "smtptut.server.settings",
    "ConsoleESMTP": "smtptut.server.protocol",
    "ConsoleMessageDelivery": "smtptut.server.delivery",
    "ConsoleSMTPFactory": "smtptut.server.factory",
    "SimpleRealm": "smtptut.server.realm",
    "makeServerService": "smtptut.server.service",
    # shared
    "ConfigError": "smtptut.settings",
}

__all__ = [
    "AcceptPolicy",
    "ClientSettings",
    "ConfigError",
    "ConsoleESMTP",
    "ConsoleMessageDelivery",
    "ConsoleSMTPFactory",
    "Envelope",
    "RecipientOutcome",
    "SMTPClientFactory",
    "SMTPTutorialClient",
    "ServerSettings",
    "SimpleRealm",
    "Status",
    "TLSPolicy",
    "__version__",
    "deliverAll",
    "getMailExchange",
    "makeServerService",
]


# Hidden from type checkers, which see the names themselves above, so that a
# misspelt name is an error for them.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name == "__version__":
            from importlib.metadata import version

            return version("smtptut")
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'smtptut' has no attribute {name!r}")
        __import__(home)
        value = getattr(sys.modules[home], name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
