"""A local stand-in for Twilio's Programmable Messaging REST API (the only part we use), for
tests: a real HTTP server on 127.0.0.1 that takes

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json

form-encoded (To, From or MessagingServiceSid, Body, StatusCallback), with HTTP basic auth
(account SID : auth token), and answers as Twilio does: 201 with the message resource
(`sid` "SM…", `status` "queued"), 401 with error 20003 for bad credentials, 400 with error
21211 for a To that is not E.164, 400 with 21610 for a number that replied STOP, and 500 when
told to fail. It then posts status callbacks ("sent", "delivered", or "undelivered" with an
ErrorCode) to the StatusCallback URL, and inbound messages to a webhook, signed like Twilio:
X-Twilio-Signature = base64(HMAC-SHA1(auth token, URL + each parameter's name and value in
name order)). Written from Twilio's documentation, independently of the app's own module."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "standin-auth-token-0123456789abcd"
FROM_NUMBER = "+15005550006"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def sign(url: str, params: dict[str, str], auth_token: str = AUTH_TOKEN) -> str:
    data = url
    for name in sorted(params):
        data += name + params[name]
    return base64.b64encode(
        hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


@dataclass
class SentMessage:
    sid: str
    form: dict[str, str]
    auth: tuple[str, str]
    path: str
    received_at: float = field(default_factory=time.time)  # wall clock, for lateness

    @property
    def to(self) -> str:
        return self.form.get("To", "")

    @property
    def body(self) -> str:
        return self.form.get("Body", "")


@dataclass
class _State:
    messages: list[SentMessage] = field(default_factory=list)
    opted_out: set[str] = field(default_factory=set)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    auto_callbacks: bool = False
    callbacks: list[tuple[str, int]] = field(default_factory=list)


class TwilioStandIn:
    def __init__(self) -> None:
        self.state = _State()
        state = self.state
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
                if self.path != path:
                    self._answer(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                auth = self.headers.get("Authorization", "")
                try:
                    user, _, password = (
                        base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
                    )
                except ValueError:
                    user = password = ""
                if (user, password) != (ACCOUNT_SID, AUTH_TOKEN):
                    self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                if (
                    self.headers.get("Content-Type", "").split(";")[0]
                    != "application/x-www-form-urlencoded"
                ):
                    self._answer(400, {"code": 21000, "message": "form expected", "status": 400})
                    return
                if not E164.match(form.get("To", "")):
                    self._answer(
                        400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
                    )
                    return
                if not (form.get("From") or form.get("MessagingServiceSid")) or not form.get(
                    "Body"
                ):
                    self._answer(
                        400, {"code": 21602, "message": "Message body is required", "status": 400}
                    )
                    return
                with state.lock:
                    if state.fail_next > 0:
                        state.fail_next -= 1
                        fail = True
                    else:
                        fail = False
                    stopped = form["To"] in state.opted_out
                if fail:
                    self._answer(
                        500, {"code": 20500, "message": "Internal Server Error", "status": 500}
                    )
                    return
                if stopped:
                    self._answer(
                        400,
                        {
                            "code": 21610,
                            "message": "Attempt to send to unsubscribed recipient",
                            "status": 400,
                        },
                    )
                    return
                sid = "SM" + secrets.token_hex(16)
                message = SentMessage(sid=sid, form=form, auth=(user, password), path=self.path)
                with state.lock:
                    state.messages.append(message)
                self._answer(
                    201,
                    {
                        "sid": sid,
                        "account_sid": ACCOUNT_SID,
                        "to": form["To"],
                        "from": form.get("From"),
                        "messaging_service_sid": form.get("MessagingServiceSid"),
                        "body": form["Body"],
                        "status": "queued",
                        "num_segments": "1",
                        "error_code": None,
                    },
                )
                if state.auto_callbacks and form.get("StatusCallback"):
                    threading.Thread(
                        target=outer._auto_callbacks, args=(message,), daemon=True
                    ).start()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def messages(self) -> list[SentMessage]:
        with self.state.lock:
            return list(self.state.messages)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def opt_out(self, number: str) -> None:
        with self.state.lock:
            self.state.opted_out.add(number)

    def fail(self, times: int = 1) -> None:
        with self.state.lock:
            self.state.fail_next = times

    def status_callback(
        self, message: SentMessage, status: str, error_code: str = ""
    ) -> httpx.Response:
        """Post a message status to its StatusCallback, signed as Twilio signs."""
        url = message.form["StatusCallback"]
        params = {
            "AccountSid": ACCOUNT_SID,
            "MessageSid": message.sid,
            "SmsSid": message.sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message.to,
            "From": message.form.get("From", FROM_NUMBER),
            "ApiVersion": "2010-04-01",
        }
        if error_code:
            params["ErrorCode"] = error_code
        response = httpx.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)})
        with self.state.lock:
            self.state.callbacks.append((status, response.status_code))
        return response

    def inbound(self, url: str, *, from_: str, body: str, opt_out_type: str = "") -> httpx.Response:
        """An incoming text to our number, posted to our messaging webhook."""
        params = {
            "AccountSid": ACCOUNT_SID,
            "MessageSid": "SM" + secrets.token_hex(16),
            "From": from_,
            "To": FROM_NUMBER,
            "Body": body,
            "NumMedia": "0",
        }
        if opt_out_type:
            params["OptOutType"] = opt_out_type
        return httpx.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)})

    def _auto_callbacks(self, message: SentMessage) -> None:
        for status in ("sent", "delivered"):
            self.status_callback(message, status)


def use_twilio(settings, standin: TwilioStandIn) -> None:
    settings.SMS_PROVIDER = "twilio"
    settings.TWILIO_BASE_URL = standin.base_url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = FROM_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
