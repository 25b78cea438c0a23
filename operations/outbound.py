"""Messages the server sends to people: email over SMTP (`aiosmtplib`) and SMS over a
Twilio-compatible Messages API (`httpx`), for Subscription email channels and appointment
reminders alike (ARCHITECTURE.md "Events and background work": timeouts, bounded retries by
the caller, an allow-list of destinations).

Both are idempotent where the far side allows it: an email carries the caller's Message-ID,
an SMS the caller's key as `I-Twilio-Idempotency-Token`, so a resend after a crash inside the
exchange is recognisable as the same message.
"""

from __future__ import annotations

from email.message import EmailMessage
from html import escape
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
import orjson

__all__ = ["SendFailed", "send_mail", "send_sms"]


class SendFailed(Exception):
    """A message was not accepted.

    Attributes:
        permanent: retrying cannot help (no server configured, a recipient refused for good,
            a gateway's 4xx other than 429).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


async def send_mail(
    *,
    smtp_url: str,
    sender: str,
    to: str,
    subject: str,
    lines: list[str],
    message_id: str,
    timeout_s: float,
    html: bool = False,
    attachment: dict[str, Any] | None = None,
) -> None:
    """Send one email.

    Args:
        smtp_url: `smtp://[user:password@]host:port` (STARTTLS when offered) or `smtps://`.
        sender, to: the From and To addresses.
        lines: the body, line by line (`html`: each line escaped, joined with `<br>`).
        message_id: the Message-ID, without angle brackets.
        timeout_s: seconds for the whole exchange.
        attachment: JSON attached as `notification.json` (`application/fhir+json`), or None.

    Raises:
        SendFailed: not configured or refused for good (`permanent`), or the server could not
            be reached or answered a temporary error.
    """
    if not smtp_url:
        raise SendFailed("no SMTP server is configured (FHIR_SERVER_SMTP_URL)", permanent=True)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    if html:
        body = "<br>".join(escape(line) for line in lines)
        message.set_content(f"<html><body>{body}</body></html>", subtype="html")
    else:
        message.set_content("\n".join(lines))
    if attachment is not None:
        message.add_attachment(
            orjson.dumps(attachment),
            maintype="application",
            subtype="fhir+json",
            filename="notification.json",
        )
    url = urlsplit(smtp_url)
    try:
        await aiosmtplib.send(
            message,
            hostname=url.hostname or "127.0.0.1",
            port=url.port or (465 if url.scheme == "smtps" else 25),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=url.scheme == "smtps",
            start_tls=None,  # STARTTLS when the server offers it
            timeout=timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise SendFailed(f"the SMTP server refused the recipient: {exc}", permanent=True) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"SMTP: {exc}") from exc


async def send_sms(
    client: httpx.AsyncClient,
    *,
    url: str,
    account: str,
    token: str,
    sender: str,
    to: str,
    body: str,
    idempotency_key: str,
    timeout_s: float,
) -> None:
    """Send one SMS through a Twilio-compatible Messages API: a form POST of `To`, `From`,
    `Body` to `url` (`.../Accounts/{sid}/Messages.json`) with basic auth `account:token`.

    Raises:
        SendFailed: not configured, or a 4xx other than 429 (`permanent`: a bad number, a
            refused account); a 429, a 5xx, a timeout or no connection (temporary).
    """
    if not url:
        raise SendFailed("no SMS gateway is configured (FHIR_SERVER_SMS_URL)", permanent=True)
    try:
        response = await client.post(
            url,
            data={"To": to, "From": sender, "Body": body},
            auth=(account, token),
            headers={"I-Twilio-Idempotency-Token": idempotency_key},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise SendFailed(f"SMS gateway: {type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    permanent = 400 <= status < 500 and status != 429
    raise SendFailed(
        f"the SMS gateway answered HTTP {status}: {response.text[:200]}", permanent=permanent
    )
