"""The user's stored events (what the WebSocket pushed), newest first, filtered, with a cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentUser, Uow
from app.api.errors import answers, as_utc, invalid
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import MAX_ID, EventPage, EventPublic
from app.domain.events import EVENT_TYPES

router = APIRouter(prefix="/events", tags=["events"], route_class=CheckedJsonRoute, responses=answers(401))
TYPES = ", ".join(sorted(EVENT_TYPES))


@router.get("", response_model=EventPage, responses=answers(422))
async def events(
    user: CurrentUser,
    uow: Uow,
    type_: Annotated[str | None, Query(alias="type", max_length=32, description=f"one of: {TYPES}")] = None,
    since: Annotated[datetime | None, Query(description="events at or after this time (UTC if no offset)")] = None,
    until: Annotated[datetime | None, Query(description="events before this time (UTC if no offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="the previous page's next_before_id")] = None,
) -> EventPage:
    if type_ is not None and type_ not in EVENT_TYPES:
        raise invalid("query", "type", f"unknown event type {type_!r}: choose one of {TYPES}", type_)
    start = None if since is None else as_utc("query", "since", since)
    end = None if until is None else as_utc("query", "until", until)
    if start is not None and end is not None and end < start:
        raise invalid("query", "until", "until is before since", str(until))
    records = await uow.events.page(user.id, type_, start, end, before_id, limit)
    items = [EventPublic(id=r.id, type=r.type, time=r.time, data=r.data) for r in records if r.id is not None]
    return EventPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)
