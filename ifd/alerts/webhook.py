"""The webhook sink: Slack- or Discord-compatible JSON, posted from a background thread.

``emit`` never blocks the caller: it puts the alert on a bounded queue (a full queue drops it,
counted and logged) and one daemon worker thread posts it with ``urllib.request``, retrying
connection errors, timeouts, HTTP 408/429/5xx with exponential backoff (``backoff_s`` doubled per
retry, capped at ``backoff_max_s``; a 429's ``Retry-After`` is honoured up to that cap). Other
HTTP errors (400 bad payload, 404 deleted webhook) are final at once. Each outcome goes to the
``report`` callback (the dispatcher writes it to the history); a failure is also logged. The URL
is a secret: it is not in ``repr`` and is scrubbed from every error text.

Payload shapes, from the services' documented webhook formats:

- Slack incoming webhook: ``{"text": fallback, "blocks": [header, section, section(fields), context]}``
  (header plain_text <= 150 chars, section text <= 3000, <= 10 fields of <= 2000 per section).
- Discord execute webhook: ``{"content": ..., "embeds": [{title, description, color, fields,
  footer, timestamp}], "allowed_mentions": {"parse": []}}`` (content <= 2000, title <= 256,
  description <= 4096, <= 25 fields with name <= 256 and value <= 1024, footer <= 2048,
  <= 6000 characters per embed); ``allowed_mentions`` keeps alert text from pinging anyone.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ifd import __version__
from ifd.alerts.alert import Alert
from ifd.alerts.alert import Level
from ifd.alerts.alert import iso_utc

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"ifd-flow/{__version__} (alerts)"  # Discord's edge refuses urllib's default agent
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

_SLACK_EMOJI = {Level.INFO: ":information_source:", Level.WARNING: ":warning:", Level.CRITICAL: ":rotating_light:"}
_DISCORD_COLOR = {Level.INFO: 0x3498DB, Level.WARNING: 0xF1C40F, Level.CRITICAL: 0xE74C3C}


@dataclass(frozen=True)
class DeliveryReport:
    """The final outcome of one alert at one sink."""

    alert_id: str
    sink: str
    status: str  # sent | failed
    attempts: int
    error: str = ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    # Slack reads & < > as markup (<!channel> would notify everyone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _footer(alert: Alert) -> str:
    return " | ".join(part for part in (alert.kind, alert.source, iso_utc(alert.ts_ns)) if part)


def slack_payload(alert: Alert) -> dict:
    """A Slack incoming-webhook message (Block Kit) with a plain ``text`` fallback for notifications."""
    fallback = f"[{alert.level.name}] {alert.title}" + (f": {alert.text}" if alert.text else "")
    header = f"{_SLACK_EMOJI[alert.level]} {alert.level.name}: {alert.title}"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": _cut(header, 150), "emoji": True}}]
    if alert.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(_slack_escape(alert.text), 3000)}})
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{_slack_escape(name)}*\n{_slack_escape(value)}", 2000)}
        for name, value in alert.fields[:40]
    ]
    for start in range(0, len(fields), 10):
        blocks.append({"type": "section", "fields": fields[start:start + 10]})
    footer = {"type": "mrkdwn", "text": _cut(_slack_escape(_footer(alert)), 3000)}
    blocks.append({"type": "context", "elements": [footer]})
    return {"text": _cut(_slack_escape(fallback), 3000), "blocks": blocks}


def discord_payload(alert: Alert) -> dict:
    """A Discord execute-webhook body: a short ``content`` line and one embed, within Discord's limits."""
    embed: dict = {
        "title": _cut(f"{alert.level.name}: {alert.title}", 256),
        "color": _DISCORD_COLOR[alert.level],
        "footer": {"text": _cut(_footer(alert), 2048)},
        "timestamp": iso_utc(alert.ts_ns),
    }
    fields = [
        {"name": _cut(name, 256) or "-", "value": _cut(value, 1024) or "-", "inline": True}
        for name, value in alert.fields[:25]
    ]
    budget = 6000 - len(embed["title"]) - len(embed["footer"]["text"])
    while fields and sum(len(f["name"]) + len(f["value"]) for f in fields) > budget:
        fields.pop()
    budget -= sum(len(f["name"]) + len(f["value"]) for f in fields)
    if alert.text and budget > 0:
        embed["description"] = _cut(alert.text, min(4096, budget))
    if fields:
        embed["fields"] = fields
    return {
        "content": _cut(f"**{alert.level.name}** {alert.title}", 2000),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


PAYLOADS: dict[str, Callable[[Alert], dict]] = {"slack": slack_payload, "discord": discord_payload}


class WebhookSink:
    """Posts alerts to one webhook URL from a background worker thread (see the module docstring)."""

    def __init__(
        self,
        url: str,
        format: str = "slack",  # the config's word
        *,
        min_level: Level = Level.WARNING,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        queue_size: int = 100,
        max_per_minute: int = 0,
        report: Callable[[DeliveryReport], None] | None = None,
        warn: Callable[[str], None] | None = None,
        name: str = "webhook",
    ) -> None:
        if format not in PAYLOADS:
            raise ValueError(f"format must be one of {', '.join(PAYLOADS)}, got {format!r}")
        self.name, self.min_level, self.max_per_minute = name, min_level, max_per_minute
        self.format = format
        self._url = url
        self._payload = PAYLOADS[format]
        self._timeout_s, self._retries = timeout_s, retries
        self._backoff_s, self._backoff_max_s = backoff_s, backoff_max_s
        self._report = report or (lambda _report: None)
        self._warn = warn or (lambda _message: None)
        # A loopback webhook never goes through a proxy; others follow the environment's proxy settings.
        handlers = [urllib.request.ProxyHandler({})] if urlsplit(url).hostname in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)
        self._queue: queue.Queue[Alert] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._count_lock = threading.Lock()
        self.counts = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0, "attempts": 0}
        self._thread = threading.Thread(target=self._run, name=f"ifd-alerts-{name}", daemon=True)
        self._thread.start()

    def set_report(self, report: Callable[[DeliveryReport], None]) -> None:
        """Where the worker sends each final outcome (the dispatcher sets it)."""
        self._report = report

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, format={self.format!r}, min_level={self.min_level.label!r})"

    # -- caller side ------------------------------------------------------------------------

    def emit(self, alert: Alert) -> str:
        """Queue the alert for the worker: ``queued``, or ``dropped`` when the queue is full or closed."""
        reason = "the sink is closed" if self._closing.is_set() else ""
        if not reason:
            try:
                self._queue.put_nowait(alert)
                self._count("queued")
                return "queued"
            except queue.Full:
                reason = f"the queue is full ({self._queue.maxsize})"
        dropped = self._count("dropped")
        self._warn(f"{self.name}: alert {alert.title!r} dropped, {reason} ({dropped} dropped so far)")
        return "dropped"

    def pending(self) -> int:
        """Alerts queued and not yet picked up by the worker."""
        return self._queue.qsize()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then cut retries short and report the rest failed."""
        self._closing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self._timeout_s + 1.0)  # a request in flight ends within its timeout

    # -- worker side --------------------------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> int:
        with self._count_lock:
            self.counts[what] += n
            return self.counts[what]

    def _run(self) -> None:
        while True:
            try:
                alert = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                if self._abort.is_set():
                    self._finish(alert, "failed", 0, "not sent: closed before its turn")
                else:
                    self._deliver(alert)
            except Exception as exc:  # the worker outlives anything (a report callback that raises)
                self._warn(f"{self.name}: worker error {type(exc).__name__}: {self._scrub(str(exc))}")

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(self._payload(alert)).encode()
        error, attempts = "", 0
        for attempt in range(1, self._retries + 2):
            attempts = attempt
            self._count("attempts")
            retry_after = None
            try:
                self._post(body)
                self._finish(alert, "sent", attempts)
                return
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
                retry_after = _retry_after(exc)
                exc.close()
                if exc.code not in RETRY_STATUS:
                    break
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                error = _describe(exc, self._timeout_s)
            if attempt > self._retries:
                break
            delay = min(self._backoff_max_s, self._backoff_s * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self._backoff_max_s, max(delay, retry_after))
            if self._abort.wait(delay):
                error += "; retries cut short at close"
                break
        error = self._scrub(error)
        self._finish(alert, "failed", attempts, error)
        self._warn(f"{self.name}: alert {alert.title!r} not delivered after {attempts} attempt(s): {error}")

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self._url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        with self._opener.open(request, timeout=self._timeout_s) as response:
            response.read()  # non-2xx raise HTTPError (urllib's HTTPErrorProcessor)

    def _finish(self, alert: Alert, status: str, attempts: int, error: str = "") -> None:
        self._count(status)
        self._report(DeliveryReport(alert.alert_id, self.name, status, attempts, error))

    def _scrub(self, text: str) -> str:
        parts = urlsplit(self._url)
        for secret in {self._url, parts.path, parts.query} - {"", "/"}:
            text = text.replace(secret, "<webhook>")
        return text


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def _describe(exc: BaseException, timeout_s: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)
