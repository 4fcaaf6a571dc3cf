"""smtptut's public names: __all__ honest, each from its home module and documented; the import light."""

from __future__ import annotations

import importlib
import importlib.metadata

from twisted.trial.unittest import SynchronousTestCase

import smtptut

from .helpers import pythonOutput

#: The main entry points, by home module: what a user of the client or an
#: embedder of the sink needs (klein's test_exports keeps such a list).
ENTRY_POINTS = {
    "smtptut.client.settings": ["ClientSettings"],
    "smtptut.client.model": ["Envelope", "RecipientOutcome", "Status", "TLSPolicy"],
    "smtptut.client.exchange": ["getMailExchange"],
    "smtptut.client.protocol": ["SMTPTutorialClient", "SMTPClientFactory"],
    "smtptut.client.delivery": ["deliverAll"],
    "smtptut.server.settings": ["ServerSettings", "AcceptPolicy"],
    "smtptut.server.protocol": ["ConsoleESMTP"],
    "smtptut.server.delivery": ["ConsoleMessageDelivery"],
    "smtptut.server.factory": ["ConsoleSMTPFactory"],
    "smtptut.server.realm": ["SimpleRealm"],
    "smtptut.server.service": ["makeServerService"],
    "smtptut.settings": ["ConfigError"],
}


class ExportsTests(SynchronousTestCase):
    def test_allIsTheEntryPoints(self) -> None:
        """
        C{__all__} is exactly the declared entry points and C{__version__}:
        none missing, none extra, none twice.
        """
        declared = [name for names in ENTRY_POINTS.values() for name in names]
        self.assertEqual(len(smtptut.__all__), len(set(smtptut.__all__)))
        self.assertEqual(set(smtptut.__all__), {*declared, "__version__"})

    def test_fromTheirHomes(self) -> None:
        """
        Each name resolves to the very object of its home module.
        """
        for home, names in ENTRY_POINTS.items():
            module = importlib.import_module(home)
            for name in names:
                self.assertIs(getattr(smtptut, name), getattr(module, name), name)

    def test_documented(self) -> None:
        """
        Each exported object has a docstring of its own.
        """
        for name in smtptut.__all__:
            if name == "__version__":
                continue
            doc = getattr(smtptut, name).__doc__ or ""
            self.assertTrue(doc.strip(), f"{name} has no docstring")
            # A dataclass without one gets its signature as __doc__.
            self.assertFalse(doc.startswith(name + "("), f"{name} has no docstring")

    def test_starImport(self) -> None:
        """
        C{from smtptut import *} gives every name of C{__all__}.
        """
        namespace: dict[str, object] = {}
        exec("from smtptut import *", namespace)
        self.assertLessEqual(set(smtptut.__all__), set(namespace))
        self.assertLessEqual(set(smtptut.__all__), set(dir(smtptut)))

    def test_version(self) -> None:
        """
        C{__version__} is the installed distribution's version.
        """
        self.assertEqual(smtptut.__version__, importlib.metadata.version("smtptut"))

    def test_unknownName(self) -> None:
        """
        A name that is not exported is an AttributeError, as for any module.
        """
        with self.assertRaises(AttributeError):
            smtptut.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
        # (mypy says so too: the names are declared for it, __getattr__ is not.)

    def test_importIsLight(self) -> None:
        """
        C{import smtptut} (which every run of the smtptut command does)
        loads neither side's modules nor Twisted: the names load on use.
        """
        code = (
            "import sys, smtptut\n"
            "print(sorted(m for m in sys.modules"
            " if m.startswith(('smtptut.', 'twisted', 'typing'))))\n"
        )
        self.assertEqual(pythonOutput(code), "[]\n")
