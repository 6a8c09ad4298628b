"""Case 1: `trdbot serve` never signs tokens with a key anyone knows or could guess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.config import DEFAULT_JWT_SECRET, Settings
from app.services.security import InvalidTokenError, TokenService
from tests.security.conftest import serve_env, start_serve


@pytest.mark.parametrize("secret", [None, DEFAULT_JWT_SECRET, "short-but-not-empty"])
def test_serve_in_paper_mode_refuses_a_public_or_short_jwt_secret(tmp_path: Path, secret: str | None) -> None:
    extra = {"JWT_SECRET": secret} if secret is not None else {}
    served = start_serve(tmp_path, serve_env(tmp_path, **extra), timeout_s=30)
    output = served.stop()
    assert served.process.returncode == 2, f"serve started with JWT_SECRET={secret!r}:\n{output}"
    assert "JWT_SECRET" in output and "refusing to start (paper mode)" in output
    if secret is not None:
        assert secret not in output  # the refusal does not print the secret it refuses


def test_jwt_secret_and_credentials_key_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "jwt").write_text("x" * 40 + "\n")
    (tmp_path / "fernet").write_text(Settings.model_fields["credentials_key"].default or "k" * 44)
    settings = Settings(jwt_secret_file=tmp_path / "jwt", credentials_key_file=tmp_path / "fernet", _env_file=None)
    assert settings.jwt_secret.get_secret_value() == "x" * 40
    assert settings.serve_problems() == []


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    served = start_serve(tmp_path, serve_env(tmp_path, JWT_SECRET_FILE=str(tmp_path / "missing")), timeout_s=30)
    output = served.stop()
    assert served.process.returncode == 2
    assert "JWT_SECRET_FILE" in output and str(tmp_path / "missing") in output


def test_the_asgi_app_refuses_the_placeholder_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """`uvicorn app.main:app` builds its settings from the environment: the same refusal as `serve`."""
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    from app import main as app_main
    from app.domain.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        app_main.create_app()


def test_a_remembered_token_still_expires_and_a_forged_one_is_never_remembered() -> None:
    """Checked tokens are remembered for speed; the memory must not outlive the expiry nor admit a bad signature."""
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    service = TokenService("s" * 40, expire_minutes=10)
    token = service.issue(7, now)
    assert service.verify(token, now).user_id == 7
    assert service.verify(token, now + timedelta(minutes=9)).user_id == 7
    with pytest.raises(InvalidTokenError):
        service.verify(token, now + timedelta(minutes=10))
    forged = TokenService("f" * 40, expire_minutes=10).issue(7, now)
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            service.verify(forged, now)
