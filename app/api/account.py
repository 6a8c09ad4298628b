"""Per-user exchange keys: stored encrypted, never returned, and the user's trading mode."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import ExchangeKeysPublic, ExchangeKeysUpdate
from app.domain.errors import ConfigurationError
from app.domain.events import ExchangeKeysChanged
from app.domain.values import TradingMode
from app.services.security import mask_key

router = APIRouter(prefix="/account", tags=["account"], route_class=CheckedJsonRoute, responses=answers(401))


@router.put("/exchange-keys", response_model=ExchangeKeysPublic, responses=answers(413, 422, 503))
async def put_keys(body: ExchangeKeysUpdate, user: CurrentUser, container: ContainerDep, uow: Uow) -> ExchangeKeysPublic:
    try:
        key_token = container.cipher.encrypt(body.api_key)
        secret_token = container.cipher.encrypt(body.api_secret)
    except ConfigurationError as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from e
    masked = mask_key(body.api_key)
    await uow.credentials.upsert(user.id, key_token, secret_token, masked, body.mode, container.clock.now())
    await uow.users.set_mode(user.id, TradingMode(body.mode))
    await uow.commit()
    await _keys_changed(container, user.id, body.mode)
    return ExchangeKeysPublic(api_key_masked=masked, mode=body.mode)


@router.get("/exchange-keys", response_model=ExchangeKeysPublic, responses=answers(404))
async def get_keys(user: CurrentUser, uow: Uow) -> ExchangeKeysPublic:
    row = await uow.credentials.get(user.id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no exchange keys stored")
    return ExchangeKeysPublic(api_key_masked=row.api_key_masked, mode=row.mode)


@router.delete("/exchange-keys", status_code=status.HTTP_204_NO_CONTENT)
async def delete_keys(user: CurrentUser, container: ContainerDep, uow: Uow) -> Response:
    await uow.credentials.delete(user.id)
    await uow.users.set_mode(user.id, TradingMode.PAPER)
    await uow.commit()
    await _keys_changed(container, user.id, TradingMode.PAPER.value)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _keys_changed(container: ContainerDep, user_id: int, mode: str) -> None:
    """Adapters built with the old keys go, here at once and in every other process (the engine's too) when it
    reads the event."""
    container.forget_exchange(user_id)
    event = ExchangeKeysChanged(mode)
    await container.websockets.publish(user_id, event.type, container.clock.now(), event.data())
