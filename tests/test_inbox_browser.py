"""A real browser on the web inbox: Debian's headless Chromium, driven by selenium."""

from __future__ import annotations

import os
import shutil
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from twisted.internet import defer, threads
from twisted.trial import unittest
from twisted.web import resource, server

from smtptut.inbox.testing import startInboxSink
from tests.helpers import reactor
from tests.inboxhelpers import relatedMessage

#: Debian's packages (`make browser` installs them); never a downloaded browser.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: The longest any one wait in the browser may take.  Chromium on two busy
#: cores can take a few seconds to start and lay out a page.
WAIT = 20.0

#: The attachment the first message carries.
REPORT = b"week,visits\r\n48,1200\r\n"

#: A 1x1 transparent PNG, for the "remote" image server.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d00000000"
    "49454e44ae426082"
)

T = TypeVar("T")


class Inbox(Protocol):
    """
    What the test needs of the sink with its inbox.
    """

    @property
    def smtpPort(self) -> int: ...

    @property
    def httpPort(self) -> int: ...

    def messages(self, query: str = "") -> list[dict[str, Any]]: ...

    def stop(self) -> defer.Deferred[Any]: ...


def _startInbox() -> defer.Deferred[Inbox]:
    """
    The one place this module meets the backend: the sink and its inbox on
    free loopback ports, over a Maildir of its own.
    """
    return defer.ensureDeferred(startInboxSink(reactor))


class CountingPixel(resource.Resource):
    """
    A "remote" image on a loopback HTTP server, counting who fetched it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        # Written by the reactor thread only, read by the browser thread.
        self.fetched = 0

    def render_GET(self, request: server.Request) -> bytes:
        self.fetched += 1
        request.setHeader(b"content-type", b"image/png")
        request.setHeader(b"cache-control", b"no-store")
        return PIXEL


def startChromium(userDataDir: str) -> WebDriver:
    """
    Headless Chromium with nothing that talks to the network by itself.
    """
    options = webdriver.ChromeOptions()
    # Given both paths, selenium never runs Selenium Manager, which would
    # otherwise look for (and download) a browser and a driver.
    options.binary_location = CHROMIUM
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-proxy-server",
        # Nothing leaves the machine: every name but the loopback address
        # fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1280,860",
        "--hide-scrollbars",
        f"--user-data-dir={userDataDir}",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(
        service=Service(executable_path=CHROMEDRIVER), options=options
    )


def waitFor(driver: WebDriver, what: str, condition: Callable[[WebDriver], T]) -> T:
    """
    Wait at most L{WAIT} seconds for C{condition} to give something true.
    """
    # The list is redrawn as events come: an element may go stale under us.
    return WebDriverWait(
        driver,
        WAIT,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, f"timed out after {WAIT:g} s waiting for {what}")


def byId(driver: WebDriver, elementId: str) -> WebElement:
    return driver.find_element(By.ID, elementId)


def rowFor(driver: WebDriver, subject: str) -> WebElement | bool:
    for row in driver.find_elements(By.CSS_SELECTOR, "#message-list li.message-row"):
        if row.find_element(By.CLASS_NAME, "subject").text == subject:
            return row
    return False


def rowClasses(driver: WebDriver, subject: str) -> list[str]:
    row = rowFor(driver, subject)
    if not isinstance(row, WebElement):
        return []
    return (row.get_attribute("class") or "").split()


def subjects(driver: WebDriver) -> list[str]:
    return [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, ".message-row .subject")
    ]


def send(smtpPort: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", smtpPort, timeout=WAIT) as client:
        client.send_message(message)


def reportMessage() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.com>"
    message["To"] = "team@example.org"
    message["Subject"] = "Weekly analytics report"
    message.set_content("Hi team,\n\nThe numbers for week 48 are attached.\n\nAda\n")
    message.add_alternative(
        "<p>Hi team,</p><p>The numbers for <b>week 48</b> are attached.</p>",
        subtype="html",
    )
    message.add_attachment(
        REPORT, maintype="text", subtype="csv", filename="report.csv"
    )
    return message


#: Markup where the inbox shows text: run if the page ever took it as HTML.
MARKUP = "<img src=x onerror=window.pwned=1>"
HOSTILE_SUBJECT = f"Totally harmless {MARKUP} newsletter"
HOSTILE_FILE = f"notes{MARKUP}.txt"


def hostileMessage(pixelURL: str) -> EmailMessage:
    """
    HTML that would mark the inbox, its frame and its cookies if its script
    ran, and fetch an image from another server if remote content loaded;
    markup in the subject, the sender's name and a file name.
    """
    message = EmailMessage()
    message["From"] = f'"Mallory {MARKUP}" <mallory@example.net>'
    message["To"] = "victim@example.org"
    message["Subject"] = HOSTILE_SUBJECT
    message.set_content("Plain text for the newsletter.\n")
    message.add_alternative(
        "<!doctype html><html><head><title>newsletter</title></head><body>"
        '<p id="visible">The newsletter itself.</p>'
        f'<img id="remote" src="{pixelURL}" width="1" height="1" alt="">'
        "<script>"
        "document.body.setAttribute('data-pwned', '1');"
        "try { parent.postMessage('pwned', '*'); } catch (e) {}"
        "try { top.document.title = 'pwned'; } catch (e) {}"
        "try { window.top.pwned = 1; } catch (e) {}"
        "try { document.cookie = 'pwned=1; path=/'; } catch (e) {}"
        "</script></body></html>",
        subtype="html",
    )
    message.add_attachment(
        b"notes\r\n", maintype="text", subtype="plain", filename=HOSTILE_FILE
    )
    return message


class BrowserInboxTests(unittest.TestCase):
    """
    The inbox as a person uses it, in Chromium, against the real sink.
    """

    timeout = 150

    def setUp(self) -> None:
        if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
            self.fail(
                f"{CHROMIUM} or {CHROMEDRIVER} is missing: run `make browser` as root "
                "(apt-get install chromium chromium-driver)"
            )
        self.shots = os.path.abspath(self.mktemp())
        os.makedirs(self.shots)
        self.pixel = CountingPixel()
        port = reactor.listenTCP(0, server.Site(self.pixel), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.pixelURL = f"http://127.0.0.1:{port.getHost().port}/pixel.png"

    def browse(
        self, scenario: Callable[[Inbox, WebDriver], None]
    ) -> defer.Deferred[None]:
        """
        Start the inbox, then run C{scenario} with a fresh Chromium in a
        thread, so the reactor serving the inbox keeps running; the browser
        is gone afterwards.
        """
        return defer.ensureDeferred(self._browse(scenario))

    async def _browse(self, scenario: Callable[[Inbox, WebDriver], None]) -> None:
        inbox = await _startInbox()
        self.addCleanup(inbox.stop)
        profile = os.path.abspath(self.mktemp())
        os.makedirs(profile)

        def run() -> None:
            driver = startChromium(profile)
            try:
                scenario(inbox, driver)
            except BaseException:
                self.screenshot(driver, "failure")
                raise
            finally:
                driver.quit()
                shutil.rmtree(profile, ignore_errors=True)

        await threads.deferToThread(run)

    def screenshot(self, driver: WebDriver, name: str) -> str:
        path = os.path.join(self.shots, name + ".png")
        try:
            driver.save_screenshot(path)
        except WebDriverException:
            pass
        return path

    def test_newMailAppearsAndOpens(self) -> defer.Deferred[None]:
        """
        A message sent with smtplib shows up in the open inbox without a
        reload, unread and with its attachment mark; opening it shows the
        subject, the text part and a working link to the attachment.
        """

        def scenario(inbox: Inbox, driver: WebDriver) -> None:
            driver.get(f"http://127.0.0.1:{inbox.httpPort}/")
            waitFor(
                driver,
                "the empty inbox",
                lambda d: byId(d, "empty-state").is_displayed(),
            )
            waitFor(
                driver,
                "the live event stream",
                lambda d: byId(d, "connection").text == "Live",
            )
            # Gone if the page reloads.
            driver.execute_script("window.__sameDocument = 'yes';")

            send(inbox.smtpPort, reportMessage())

            row = waitFor(
                driver, "the new row", lambda d: rowFor(d, "Weekly analytics report")
            )
            assert isinstance(row, WebElement)
            self.assertEqual(
                driver.execute_script("return window.__sameDocument;"), "yes"
            )
            self.assertIn("unread", rowClasses(driver, "Weekly analytics report"))
            self.assertEqual(
                row.find_element(By.CLASS_NAME, "from").text, "Ada Lovelace"
            )
            self.assertIn(
                "team@example.org", row.find_element(By.CLASS_NAME, "to").text
            )
            self.assertTrue(row.find_elements(By.CLASS_NAME, "attachment-mark"))
            self.screenshot(driver, "inbox-list")

            row.click()
            waitFor(
                driver,
                "the subject in the view",
                lambda d: byId(d, "view-subject").text == "Weekly analytics report",
            )
            waitFor(
                driver,
                "the row to be read",
                lambda d: "unread" not in rowClasses(d, "Weekly analytics report"),
            )
            byId(driver, "tab-text").click()
            waitFor(
                driver,
                "the text part",
                lambda d: (
                    "The numbers for week 48 are attached." in byId(d, "text-body").text
                ),
            )
            links = driver.find_elements(
                By.CSS_SELECTOR, "#attachment-list a.attachment"
            )
            self.assertEqual([link.text for link in links], ["report.csv"])
            href = links[0].get_attribute("href") or ""
            self.assertIn("/api/v1/message/", href)
            self.assertIn("/part/", href)
            fetched = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "fetch(arguments[0]).then(r => r.text()).then(done, e => done('error ' + e));",
                href,
            )
            self.assertEqual(
                fetched.replace("\r\n", "\n"), REPORT.decode().replace("\r\n", "\n")
            )
            byId(driver, "tab-html").click()
            self.screenshot(driver, "inbox-message")

        return self.browse(scenario)

    def test_messageScriptsDoNotRun(self) -> defer.Deferred[None]:
        """
        A message's HTML shows in a sandboxed frame: its script never runs,
        and its remote image is fetched only after "Load remote images".
        """

        def frameLoads(driver: WebDriver) -> int:
            return int(driver.execute_script("return window.__frameLoads;"))

        def assertNothingRan(driver: WebDriver) -> None:
            self.assertEqual(driver.execute_script("return window.__posted;"), [])
            self.assertIsNone(driver.execute_script("return window.pwned;"))
            self.assertNotEqual(driver.title, "pwned")
            self.assertNotIn("pwned", [c["name"] for c in driver.get_cookies()])
            driver.switch_to.frame(byId(driver, "html-frame"))
            try:
                visible = waitFor(
                    driver,
                    "the message HTML",
                    lambda d: d.find_elements(By.ID, "visible"),
                )
                self.assertEqual(visible[0].text, "The newsletter itself.")
                body = driver.find_element(By.TAG_NAME, "body")
                self.assertIsNone(body.get_attribute("data-pwned"))
            finally:
                driver.switch_to.default_content()

        def scenario(inbox: Inbox, driver: WebDriver) -> None:
            driver.get(f"http://127.0.0.1:{inbox.httpPort}/")
            waitFor(
                driver,
                "the empty inbox",
                lambda d: byId(d, "empty-state").is_displayed(),
            )
            # What the message's script would reach if it ran: a message to
            # the inbox, the inbox's globals, its title, its cookies.
            driver.execute_script(
                "window.__posted = [];"
                "window.addEventListener('message', e => window.__posted.push(String(e.data)));"
                "window.__frameLoads = 0;"
                "document.getElementById('html-frame')"
                ".addEventListener('load', () => { window.__frameLoads += 1; });"
            )
            send(inbox.smtpPort, hostileMessage(self.pixelURL))
            row = waitFor(
                driver,
                "the new row",
                lambda d: rowFor(d, HOSTILE_SUBJECT),
            )
            assert isinstance(row, WebElement)
            self.assertEqual(
                row.find_element(By.CLASS_NAME, "from").text, f"Mallory {MARKUP}"
            )
            row.click()
            waitFor(
                driver,
                "the subject, as text",
                lambda d: byId(d, "view-subject").text == HOSTILE_SUBJECT,
            )
            links = driver.find_elements(
                By.CSS_SELECTOR, "#attachment-list a.attachment"
            )
            self.assertEqual([link.text for link in links], [HOSTILE_FILE])
            waitFor(driver, "the HTML frame to load", lambda d: frameLoads(d) >= 1)
            frame = byId(driver, "html-frame")
            self.assertIn("remote=0", frame.get_attribute("src") or "")
            # The inbox's own guard, whatever headers the sink sends.
            sandbox = (frame.get_attribute("sandbox") or "").split()
            self.assertNotIn("allow-scripts", sandbox)
            self.assertNotIn("allow-same-origin", sandbox)
            # Anything the frame's load could have started has had its chance.
            time.sleep(0.5)
            assertNothingRan(driver)
            self.assertEqual(self.pixel.fetched, 0)
            self.screenshot(driver, "inbox-blocked")

            byId(driver, "load-remote").click()
            waitFor(driver, "the frame to reload", lambda d: frameLoads(d) >= 2)
            deadline = time.monotonic() + WAIT
            while self.pixel.fetched == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertGreaterEqual(self.pixel.fetched, 1)
            # Remote content allowed, scripts still not.
            time.sleep(0.5)
            assertNothingRan(driver)
            self.screenshot(driver, "inbox-remote-loaded")

        return self.browse(scenario)

    def test_searchMarkAndDelete(self) -> defer.Deferred[None]:
        """
        Searching narrows the list; marking unread and deleting one or all
        in the browser change what the sink holds.
        """

        def scenario(inbox: Inbox, driver: WebDriver) -> None:
            def held(query: str = "") -> list[dict[str, Any]]:
                # The index belongs to the reactor's thread.
                result: list[dict[str, Any]] = threads.blockingCallFromThread(
                    reactor, inbox.messages, query
                )
                return result

            for subject in ("Alpha notice", "Beta notice"):
                message = EmailMessage()
                message["From"] = "sender@example.com"
                message["To"] = "reader@example.org"
                message["Subject"] = subject
                message.set_content(f"The {subject.lower()} itself.\n")
                send(inbox.smtpPort, message)

            driver.get(f"http://127.0.0.1:{inbox.httpPort}/")
            waitFor(
                driver,
                "both messages",
                lambda d: subjects(d) == ["Beta notice", "Alpha notice"],
            )

            byId(driver, "search").send_keys("subject:beta\n")
            waitFor(driver, "the search", lambda d: subjects(d) == ["Beta notice"])
            self.assertIn("q=subject%3Abeta", driver.current_url)
            byId(driver, "search-clear").click()
            waitFor(driver, "the whole list", lambda d: len(subjects(d)) == 2)

            row = waitFor(driver, "the row", lambda d: rowFor(d, "Alpha notice"))
            assert isinstance(row, WebElement)
            row.click()
            waitFor(
                driver,
                "the message",
                lambda d: byId(d, "view-subject").text == "Alpha notice",
            )
            waitFor(
                driver,
                "opened means read",
                lambda d: held("subject:alpha")[0]["Read"] is True,
            )
            byId(driver, "toggle-read").click()
            waitFor(
                driver,
                "the sink to mark it unread",
                lambda d: held("subject:alpha")[0]["Read"] is False,
            )
            waitFor(
                driver,
                "the row in bold again",
                lambda d: "unread" in rowClasses(d, "Alpha notice"),
            )

            byId(driver, "delete-one").click()
            waitFor(driver, "the row to go", lambda d: subjects(d) == ["Beta notice"])
            self.assertEqual([m["Subject"] for m in held()], ["Beta notice"])

            button = byId(driver, "delete-all")
            button.click()
            # The first click only asks.
            self.assertIn("Click again", button.text)
            self.assertEqual(len(held()), 1)
            button.click()
            waitFor(
                driver,
                "the empty inbox",
                lambda d: byId(d, "empty-state").is_displayed(),
            )
            self.assertEqual(held(), [])
            self.screenshot(driver, "inbox-emptied")

        return self.browse(scenario)

    def test_inlineImagesShow(self) -> defer.Deferred[None]:
        """
        A message's inline images (C{cid:} references to its parts) show in
        the HTML frame, while its remote image stays blocked.
        """
        subject = "Inline images newsletter"

        def imageWidths(driver: WebDriver) -> dict[str, int] | bool:
            # Each image's natural width once all three have settled.
            found = driver.execute_script(
                "const out = {};"
                "for (const id of ['logo', 'photo', 'remote']) {"
                "  const img = document.getElementById(id);"
                "  if (!img || !img.complete) return null;"
                "  out[id] = img.naturalWidth;"
                "}"
                "return out;"
            )
            return found or False

        def scenario(inbox: Inbox, driver: WebDriver) -> None:
            data = relatedMessage(
                subject,
                html=f'<p><img id="remote" src="{self.pixelURL}" alt="remote"></p>',
                attachment=False,
            )
            with smtplib.SMTP("127.0.0.1", inbox.smtpPort, timeout=WAIT) as client:
                client.sendmail("ada@example.com", ["bob@example.net"], data)
            driver.get(f"http://127.0.0.1:{inbox.httpPort}/")
            row = waitFor(driver, "the new row", lambda d: rowFor(d, subject))
            assert isinstance(row, WebElement)
            row.click()
            waitFor(
                driver,
                "the subject in the view",
                lambda d: byId(d, "view-subject").text == subject,
            )
            frame = waitFor(
                driver,
                "the HTML frame",
                lambda d: (
                    "remote=0" in (byId(d, "html-frame").get_attribute("src") or "")
                    and byId(d, "html-frame")
                ),
            )
            driver.switch_to.frame(frame)
            try:
                widths = waitFor(driver, "the images to settle", imageWidths)
            finally:
                driver.switch_to.default_content()
            self.assertEqual(widths, {"logo": 3, "photo": 5, "remote": 0})
            self.assertEqual(self.pixel.fetched, 0)
            self.screenshot(driver, "inbox-inline-images")

        return self.browse(scenario)
