"""README.md's client settings table says what CLIENT_SETTINGS does."""

from twisted.trial.unittest import SynchronousTestCase

from smtptut.client.settings import CLIENT_SETTINGS

from .helpers import readmeSettingsTable


class ClientTableTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rows = readmeSettingsTable("Client (")

    def test_variables(self) -> None:
        """
        The same settings, in the same order.
        """
        self.assertEqual(
            [row["variable"] for row in self.rows],
            [setting.variable for setting in CLIENT_SETTINGS],
        )

    def test_optionsAndDefaults(self) -> None:
        """
        Each row names the option C{smtptut send} has for it (a secret has
        none) and the default as C{--help} says it.
        """
        for setting, row in zip(CLIENT_SETTINGS, self.rows, strict=True):
            option = (
                f"--{setting.optionName}" if setting.optionName else "none (secret)"
            )
            self.assertEqual(
                (row["option"], row["default"]),
                (option, setting.defaultText),
                setting.variable,
            )

    def test_defaultTextIsTheDefault(self) -> None:
        """
        Where the default is a value, its text parses to it: the table cannot
        say C{25} while the code uses another port.
        """
        checked = 0
        for setting in CLIENT_SETTINGS:
            if setting.default is None or setting.default == ():
                continue
            self.assertEqual(
                setting.parse(setting.defaultText), setting.default, setting.variable
            )
            checked += 1
        self.assertEqual(checked, 6)
