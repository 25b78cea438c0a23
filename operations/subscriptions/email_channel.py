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
from typing import Any

from operations.outbound import send_mail
from operations.subscriptions.criteria import Channel

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
    """Send one notification message (`outbound.send_mail`).

    Args:
        smtp_url: `smtp://[user:password@]host:port` (`smtps://` for implicit TLS).
        channel: the Subscription's email channel (`mailto:` endpoint, payload type).
        lines: the body, line by line (already limited to what the content level allows).
        attachment: the JSON to attach when the payload asks for it, or None.
        message_id: the Message-ID (without angle brackets).

    Raises:
        SendFailed: (`rest_hook.DeliveryFailed`) the SMTP server refused or could not be
            reached (`permanent` when no SMTP server is configured or it refused the
            recipient for good).
    """
    await send_mail(
        smtp_url=smtp_url,
        sender=sender,
        to=channel.endpoint.removeprefix("mailto:").split("?")[0],
        subject=subject,
        lines=list(lines),
        message_id=message_id,
        timeout_s=timeout_s,
        html=channel.payload.split(";")[0].strip() == "text/html",
        attachment=attachment if ATTACH in channel.payload.replace(" ", "") else None,
    )
