"""The `email` channel (R4 `subscription.html`; Backport IG "Channels: Email"): one message
per notification through the SMTP server `smtp_url`, with `aiosmtplib`.

The body is human readable and carries no more than the payload content allows: for `empty`
(and R4 criteria without payload) only which Subscription fired and its event numbers; for
`id-only`/`full-resource` also the focus references. With `channel.payload`
`...;attach=application/fhir+json` the notification Bundle (topic-based) or the resource (R4
criteria) is attached as JSON. Each message has a Message-ID made of the Subscription and its
event numbers, so a redelivery after a crash repeats the same Message-ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from html import escape
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import orjson

from operations.subscriptions.criteria import Channel
from operations.subscriptions.rest_hook import DeliveryFailed

__all__ = ["send_email"]

ATTACH = "attach=application/fhir+json"


async def send_email(
    *,
    smtp_url: str,
    sender: str,
    channel: Channel,
    subject: str,
    lines: Sequence[str],
    attachment: dict[str, Any] | None,
    message_id: str,
    timeout_s: float,
) -> None:
    """Send one notification message.

    Args:
        smtp_url: `smtp://[user:password@]host:port` (`smtps://` for implicit TLS).
        channel: the Subscription's email channel (`mailto:` endpoint, payload type).
        lines: the body, line by line (already limited to what the content level allows).
        attachment: the JSON to attach when the payload asks for it, or None.
        message_id: the Message-ID (without angle brackets).

    Raises:
        DeliveryFailed: the SMTP server refused or could not be reached (`permanent` when
            no SMTP server is configured or it refused the recipient for good, 5xx).
    """
    if not smtp_url:
        raise DeliveryFailed("no SMTP server is configured (FHIR_SERVER_SMTP_URL)", permanent=True)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = channel.endpoint.removeprefix("mailto:").split("?")[0]
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id}>"
    if channel.payload.split(";")[0].strip() == "text/html":
        body = "<br>".join(escape(line) for line in lines)
        message.set_content(f"<html><body>{body}</body></html>", subtype="html")
    else:
        message.set_content("\n".join(lines))
    if attachment is not None and ATTACH in channel.payload.replace(" ", ""):
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
        raise DeliveryFailed(
            f"the SMTP server refused the recipient: {exc}", permanent=True
        ) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"SMTP: {exc}") from exc
