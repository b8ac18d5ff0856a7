"""The webhook sink against a real HTTP server on 127.0.0.1: exact Slack / Discord JSON, and a server
that is down, slow, failing or rate limiting. Dispatch never waits for it; outcomes reach the history."""

from __future__ import annotations

import argparse
import threading

import pytest

from ifd.alerts import Alert
from ifd.alerts import AlertDispatcher
from ifd.alerts import AlertHistory
from ifd.alerts.cli import register
from ifd.alerts.webhook import USER_AGENT
from ifd.alerts.webhook import WebhookSink
from tests.support.webhook_server import SECRET_PATH
from tests.support.webhook_server import WebhookServer
from tests.support.webhook_server import refused_url

S = 1_000_000_000
T0 = 1_794_839_400 * S  # 2026-11-16T14:30:00Z
FAST = {"timeout_s": 2.0, "backoff_s": 0.01, "backoff_max_s": 0.05}


def flow_alert(level: str = "critical", key: str = "flow:1", ts_s: int = 0) -> Alert:
    return Alert.create(
        level, "flow_signal", "BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)",
        "$4.20M premium, confidence 0.87; 3 sweeps <in 2 s> & rising",
        key=key, fields={"confidence": "0.87", "premium": "$4.20M"}, ts_ns=T0 + ts_s * S, source="IFD-LIVE",
    )


@pytest.fixture
def server_factory():
    servers: list[WebhookServer] = []

    def make(script=(), default=200) -> WebhookServer:
        servers.append(WebhookServer(script, default))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def setup(tmp_path):
    """(url, format, retries, **kw) -> (dispatcher, sink, history, warnings); closes them at the end."""
    made: list[AlertDispatcher] = []

    def make(url: str, format: str = "slack", retries: int = 2, **kw):
        warnings: list[str] = []
        sink = WebhookSink(url, format, retries=retries, warn=warnings.append, **(FAST | kw))
        history = AlertHistory(tmp_path / f"h{len(made)}.sqlite")
        dispatcher = AlertDispatcher([sink], history, dedup_window_s=0, warn=warnings.append)
        made.append(dispatcher)
        return dispatcher, sink, history, warnings

    yield make
    for dispatcher in made:
        dispatcher.close(1.0)


def final(history: AlertHistory, sink: WebhookSink, timeout: float = 10.0) -> list[dict]:
    """Close the sink (waits for the worker) and return the webhook delivery of each alert."""
    sink.close(timeout)
    return [row["deliveries"]["webhook"] for row in history.query()]


def test_slack_payload_received_exactly(server_factory, setup):
    server = server_factory()
    dispatcher, sink, history, warnings = setup(server.url, "slack")
    assert dispatcher.dispatch(flow_alert()).deliveries == {"webhook": "queued"}
    assert final(history, sink) == [{"status": "sent", "attempts": 1, "error": ""}]
    [request] = server.requests
    assert request["path"] == SECRET_PATH
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == USER_AGENT
    assert request["body"] == {
        "text": "[CRITICAL] BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3): $4.20M premium, confidence 0.87; "
                "3 sweeps &lt;in 2 s&gt; &amp; rising",
        "blocks": [
            {"type": "header", "text": {
                "type": "plain_text", "text": ":rotating_light: CRITICAL: BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)",
                "emoji": True}},
            {"type": "section", "text": {
                "type": "mrkdwn", "text": "$4.20M premium, confidence 0.87; 3 sweeps &lt;in 2 s&gt; &amp; rising"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*confidence*\n0.87"},
                {"type": "mrkdwn", "text": "*premium*\n$4.20M"},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": "flow_signal | IFD-LIVE | 2026-11-16T14:30:00.000Z"}]},
        ],
    }
    assert not warnings


def test_discord_payload_received_exactly(server_factory, setup):
    server = server_factory(default=204)  # Discord answers 204 No Content
    dispatcher, sink, history, _ = setup(server.url, "discord")
    dispatcher.dispatch(flow_alert("warning"))
    assert final(history, sink) == [{"status": "sent", "attempts": 1, "error": ""}]
    assert server.bodies() == [{
        "content": "**WARNING** BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)",
        "embeds": [{
            "title": "WARNING: BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)",
            "color": 0xF1C40F,
            "footer": {"text": "flow_signal | IFD-LIVE | 2026-11-16T14:30:00.000Z"},
            "timestamp": "2026-11-16T14:30:00.000Z",
            "description": "$4.20M premium, confidence 0.87; 3 sweeps <in 2 s> & rising",
            "fields": [
                {"name": "confidence", "value": "0.87", "inline": True},
                {"name": "premium", "value": "$4.20M", "inline": True},
            ],
        }],
        "allowed_mentions": {"parse": []},
    }]


def test_payloads_stay_within_the_services_limits():
    from ifd.alerts.webhook import discord_payload
    from ifd.alerts.webhook import slack_payload

    big = Alert.create("info", "k", "T" * 500, "x" * 9000, fields={f"f{i:02d}": "v" * 1500 for i in range(30)})
    slack = slack_payload(big)
    assert len(slack["blocks"][0]["text"]["text"]) <= 150 and len(slack["blocks"][1]["text"]["text"]) <= 3000
    sections = [b for b in slack["blocks"] if "fields" in b]
    assert all(len(b["fields"]) <= 10 for b in sections) and sum(len(b["fields"]) for b in sections) == 30
    embed = discord_payload(big)["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["fields"]) <= 25
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    total = len(embed["title"]) + len(embed.get("description", "")) + len(embed["footer"]["text"]) + sum(
        len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= 6000


def test_server_down_dispatch_goes_on_and_the_alert_is_recorded_failed(setup, capfd):
    url = refused_url()
    dispatcher, sink, history, warnings = setup(url, retries=2)
    assert dispatcher.dispatch(flow_alert()).deliveries == {"webhook": "queued"}  # returned, not raised
    assert final(history, sink) == [{"status": "failed", "attempts": 3, "error": "connection refused"}]
    assert sink.counts["attempts"] == 3 and dispatcher.stats()["sinks"]["webhook"]["failed"] == 1
    assert warnings == ["webhook: alert 'BULLISH flow: BUY NQZ6 C21000.GLBX (ifd_v3)' not delivered after "
                        "3 attempt(s): connection refused"]
    out, err = capfd.readouterr()
    for text in [*warnings, out, err, repr(sink), str(history.query())]:
        assert SECRET_PATH not in text and "s3cr3t" not in text  # the URL is a secret


def test_slow_server_dispatch_returns_before_the_server_answers_then_times_out(server_factory, setup):
    server = server_factory(script=["hold"])
    dispatcher, sink, history, warnings = setup(server.url, retries=1, timeout_s=0.5)
    first = dispatcher.dispatch(flow_alert(key="a"))
    assert server.entered.wait(5)  # the worker is now inside the first request, the server holds it
    second = dispatcher.dispatch(flow_alert(key="b", ts_s=1))  # returns while the worker is stuck
    assert not server.answered.is_set()  # both dispatches came back before the server answered anything
    assert first.deliveries == second.deliveries == {"webhook": "queued"}
    statuses = final(history, sink)
    # The first timed out, was retried (the retry got a 200); the second went through at once.
    assert statuses == [{"status": "sent", "attempts": 2, "error": ""}, {"status": "sent", "attempts": 1, "error": ""}]
    server.release.set()
    assert not warnings

    slow = server_factory(default="hold")
    dispatcher, sink, history, warnings = setup(slow.url, retries=1, timeout_s=0.2)
    dispatcher.dispatch(flow_alert())
    assert final(history, sink) == [{"status": "failed", "attempts": 2, "error": "timed out after 0.2 s"}]
    assert "timed out" in warnings[0]


def test_http_500_is_retried_then_failed_and_a_recovery_is_sent(server_factory, setup):
    failing = server_factory(default=500)
    dispatcher, sink, history, warnings = setup(failing.url, retries=3)
    dispatcher.dispatch(flow_alert())
    assert final(history, sink) == [{"status": "failed", "attempts": 4, "error": "HTTP 500 Internal Server Error"}]
    assert len(failing.requests) == 4 and len(warnings) == 1
    assert failing.bodies()[0] == failing.bodies()[3]  # the same message each time

    recovering = server_factory(script=[503, (429, 0)], default=200)
    dispatcher, sink, history, warnings = setup(recovering.url, retries=3)
    dispatcher.dispatch(flow_alert())
    assert final(history, sink) == [{"status": "sent", "attempts": 3, "error": ""}]
    assert not warnings


def test_a_permanent_http_error_is_not_retried(server_factory, setup):
    server = server_factory(default=404)  # e.g. a deleted webhook
    dispatcher, sink, history, _ = setup(server.url, retries=3)
    dispatcher.dispatch(flow_alert())
    assert final(history, sink) == [{"status": "failed", "attempts": 1, "error": "HTTP 404 Not Found"}]


def test_a_full_queue_drops_counted_logged_and_recorded(server_factory, setup):
    server = server_factory(script=["hold"])
    dispatcher, sink, history, warnings = setup(server.url, queue_size=1)
    dispatcher.dispatch(flow_alert(key="in flight"))
    assert server.entered.wait(5)
    results = [dispatcher.dispatch(flow_alert(key=f"k{i}", ts_s=i + 1)).deliveries["webhook"] for i in range(3)]
    assert results == ["queued", "dropped", "dropped"]
    assert sink.counts["dropped"] == 2 and dispatcher.stats()["sinks"]["webhook"]["dropped"] == 2
    assert warnings[-1].endswith("dropped, the queue is full (1) (2 dropped so far)")
    server.release.set()
    assert [d["status"] for d in final(history, sink)] == ["sent", "sent", "dropped", "dropped"]


def test_close_cuts_long_backoffs_short(setup):
    dispatcher, sink, history, _ = setup(refused_url(), retries=5, backoff_s=30.0, backoff_max_s=30.0)
    dispatcher.dispatch(flow_alert(key="a"))
    dispatcher.dispatch(flow_alert(key="b", ts_s=1))
    done = threading.Event()
    closer = threading.Thread(target=lambda: (sink.close(0.2), done.set()))
    closer.start()
    assert done.wait(5)  # not 5 x 30 s
    first, second = (row["deliveries"]["webhook"] for row in history.query())
    assert first["status"] == "failed" and first["error"] == "connection refused; retries cut short at close"
    assert second == {"status": "failed", "attempts": 0, "error": "not sent: closed before its turn"}
    assert sink.emit(flow_alert(key="c")) == "dropped"  # closed


def run_cli(argv: list[str]) -> int:
    root = argparse.ArgumentParser(prog="ifd")
    register(root.add_subparsers(dest="group", required=True))
    args = root.parse_args(argv)
    return args.func(args)


def test_alerts_test_command_reports_the_webhook(server_factory, tmp_path, monkeypatch, capsys):
    good, bad = server_factory(), server_factory(default=500)
    path = tmp_path / "alerts.toml"
    path.write_text(
        "[console]\nenabled = false\n[log_file]\nenabled = false\n"
        f"[history]\npath = '{tmp_path / 'h.sqlite'}'\n"
        "[webhook]\nenabled = true\nformat = 'discord'\nretries = 1\nbackoff_s = 0.01\ntimeout_s = 2\n",
    )
    monkeypatch.setenv("IFD_WEBHOOK_URL", good.url)
    assert run_cli(["alerts", "test", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "webhook: sent after 1 attempt(s)"
    assert good.bodies()[0]["embeds"][0]["title"] == "INFO: Test alert"

    monkeypatch.setenv("IFD_WEBHOOK_URL", bad.url)
    assert run_cli(["alerts", "test", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "webhook: failed after 2 attempt(s): HTTP 500 Internal Server Error"
    assert SECRET_PATH not in out + err
