"""Registration, login (throttled) and the current user."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.schemas import LoginAnswer, LoginRequest, Me, RegisterAnswer, UserCreate, UserPublic

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=RegisterAnswer)
async def register(body: UserCreate, container: ContainerDep, uow: Uow) -> RegisterAnswer:
    taken = await uow.users.taken(body.username, body.email)
    if taken:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{' and '.join(taken)} already taken")
    now = container.clock.now()
    user = await uow.users.add(body.username, body.email, container.hasher.hash(body.password), now)
    settings = container.settings
    await uow.configs.create(container.default_config(user.id), now)
    await uow.portfolios.create(user.id, settings.paper_start_balance, now)
    await container.open_paper_account(uow, user.id)
    await uow.commit()
    token = container.tokens.issue(user.id, now)
    return RegisterAnswer(access_token=token, user=UserPublic(id=user.id, username=user.username, email=user.email))


@router.post("/login", response_model=LoginAnswer)
async def login(body: LoginRequest, container: ContainerDep, uow: Uow) -> LoginAnswer:
    settings, now = container.settings, container.clock.now()
    key = body.username.lower()
    throttle = await uow.throttle.get(key)
    if throttle is not None and throttle.locked_until is not None and throttle.locked_until > now:
        retry_after = int((throttle.locked_until - now).total_seconds()) + 1
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later", {"Retry-After": str(retry_after)}
        )
    user = await uow.users.by_username(body.username)
    if not container.hasher.verify(body.password, user.password_hash if user else None) or user is None:
        await uow.throttle.record_failure(key, now, settings.login_lockout_seconds, settings.login_max_failures)
        await uow.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    await uow.throttle.reset(key)
    await uow.commit()
    token = container.tokens.issue(user.id, now)
    return LoginAnswer(access_token=token, expires_in=container.tokens.expire_minutes * 60)


@router.get("/me", response_model=Me)
async def me(user: CurrentUser) -> Me:
    return Me(id=user.id, username=user.username, email=user.email, created_at=user.created_at)

