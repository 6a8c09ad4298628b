"""Dependencies as short Annotated aliases: the container, a unit of work, the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.domain.records import UserAccount
from app.repositories import UnitOfWork
from app.services.security import InvalidTokenError

if TYPE_CHECKING:
    from app.container import Container

bearer = HTTPBearer(auto_error=False)


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated["Container", Depends(get_container)]


async def get_uow(container: ContainerDep) -> AsyncIterator[UnitOfWork]:
    async with container.uow() as uow:
        yield uow


Uow = Annotated[UnitOfWork, Depends(get_uow)]

UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED, "not authenticated: send a valid bearer token", {"WWW-Authenticate": "Bearer"}
)


async def current_user(
    container: ContainerDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> UserAccount:
    """The token's user, from the per-process user cache or a unit of work of its own that has ended before the
    route runs: a request holds at most one connection (the route's), whatever the route waits for."""
    if credentials is None:
        raise UNAUTHORIZED
    try:
        claims = container.tokens.verify(credentials.credentials, container.clock.now())
    except InvalidTokenError as e:
        raise UNAUTHORIZED from e
    user = await container.users.get(claims.user_id)
    if user is None:
        raise UNAUTHORIZED
    return user


CurrentUser = Annotated[UserAccount, Depends(current_user)]


def client_address(request: Request) -> str:
    """The peer's address (uvicorn puts the proxy's X-Forwarded-For there for FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
