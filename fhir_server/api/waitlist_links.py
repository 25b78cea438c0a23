"""The accept and decline links of waitlist offers: `GET|POST /waitlist/offers/{token}` on the
server's origin (`operations.waitlist.links`). No login: the signed token is the credential,
for that one action on that one offer.

* GET: 200 with a page showing the offer and a `Confirm booking` (accept) or `Decline`
  button; mail scanners that prefetch links change nothing.
* POST (the button): books or declines (`operations.waitlist.respond`), 200 with the result.
* Refusals: 404 a link that is not valid, 410 an expired one, 409 an offer no longer held
  (booked already, declined, lapsed, or the booking was refused). Browsers (`Accept:
  text/html`) get a page; other clients an OperationOutcome.

Responses are `no-store`, not framed, and sent with `Referrer-Policy: no-referrer` (the
token is in the URL).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from fhir_server.api.errors import outcome_response
from fhir_server.repository import RepositoryFactory
from operations.waitlist import pages
from operations.waitlist.links import LINK_PATH, LinkInvalid, link_key, read_link
from operations.waitlist.respond import OfferEnded, accept, decline, view_offer
from resources.errors import Issue, IssueType
from resources.fhir_dates import now_us

__all__ = ["waitlist_link_routes"]

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
JOB = "waitlist offer link"
"""The requestor the AuditEvents of a link's booking or decline name."""


def waitlist_link_routes() -> list[Route]:
    """The route, mounted by `fhir_server.app` (it reads `app.state.repositories`)."""
    return [Route(LINK_PATH + "{token}", _offer, methods=["GET", "POST"])]


def _refusal(request: Request, status: int, code: IssueType, message: str) -> Response:
    if "text/html" in request.headers.get("accept", "text/html"):
        return HTMLResponse(pages.problem_page(message), status_code=status, headers=HEADERS)
    return outcome_response(status, [Issue(code=code, diagnostics=message)], HEADERS, request)


async def _offer(request: Request) -> Response:
    repositories: RepositoryFactory = request.app.state.repositories
    settings = request.app.state.settings
    repository = repositories.for_server(JOB, settings.base_url)
    now = now_us()
    try:
        link = read_link(await link_key(repository), request.path_params["token"], now)
    except LinkInvalid as exc:
        if "expired" in str(exc):
            return _refusal(request, 410, "expired", str(exc))
        return _refusal(request, 404, "not-found", str(exc))
    try:
        if request.method == "GET":
            view = await view_offer(repository, link.offer_id, now)
            return HTMLResponse(pages.offer_page(view, link.action), headers=HEADERS)
        act = accept if link.action == "accept" else decline
        view = await act(repository, link.offer_id, now)
    except OfferEnded as exc:
        return _refusal(request, 409, "conflict", str(exc))
    return HTMLResponse(pages.result_page(view), headers=HEADERS)
