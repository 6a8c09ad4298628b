"""Registration, login (throttled per username and per client address) and the current user."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import ClientAddress, ContainerDep, CurrentUser, Uow
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import LoginAnswer, LoginRequest, Me, RegisterAnswer, UserCreate, UserPublic
from app.repositories import AlreadyTaken
from app.services.security import HasherBusy, LoginRefused, WrongCredentials

router = APIRouter(prefix="/auth", tags=["auth"], route_class=CheckedJsonRoute)

BUSY = "too many password checks are waiting; retry in a moment"


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=RegisterAnswer,
             responses=answers(409, 413, 422, 503))
async def register(body: UserCreate, container: ContainerDep, uow: Uow) -> RegisterAnswer:
    if taken := await uow.users.taken(body.username, body.email):
        raise HTTPException(status.HTTP_409_CONFLICT, f"{' and '.join(taken)} already taken")
    await uow.commit()  # no connection is held while the password is hashed
    try:
        password_hash = await container.hasher.hash_async(body.password)
    except HasherBusy as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BUSY, {"Retry-After": "1"}) from e
    now = container.clock.now()
    try:
        user = await uow.users.add(body.username, body.email, password_hash, now)
    except AlreadyTaken as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    await uow.configs.create(container.default_config(user.id), now)
    await uow.portfolios.create(user.id, container.settings.paper_start_balance, now)
    await container.open_paper_account(uow, user.id)
    await uow.commit()
    token = container.tokens.issue(user.id, now)
    return RegisterAnswer(access_token=token, user=UserPublic(id=user.id, username=user.username, email=user.email))


@router.post("/login", response_model=LoginAnswer, responses=answers(401, 413, 422, 429, 503))
async def login(body: LoginRequest, address: ClientAddress, container: ContainerDep, uow: Uow) -> LoginAnswer:
    try:
        user = await container.logins.login(uow, body.username, body.password, address)
    except LoginRefused as e:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(e), {"Retry-After": str(e.retry_after_s)}) from e
    except WrongCredentials as e:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password") from e
    except HasherBusy as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BUSY, {"Retry-After": "1"}) from e
    token = container.tokens.issue(user.id, container.clock.now())
    return LoginAnswer(access_token=token, expires_in=container.tokens.expire_minutes * 60)


@router.get("/me", response_model=Me, responses=answers(401))
async def me(user: CurrentUser) -> Me:
    return Me(id=user.id, username=user.username, email=user.email, created_at=user.created_at)
