from __future__ import annotations

import pytest

from reviewapp import create_app
from reviewapp.amp.crypto import SecretUnreadable, decrypt_secret, encrypt_secret, secret_hint


def _app(**config):
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", **config})


def test_round_trip_and_no_plaintext_in_ciphertext():
    app = _app(SECRET_KEY="k" * 40)
    with app.app_context():
        sealed = encrypt_secret(None, "tok-very-secret-1234")
        assert "tok-very-secret" not in sealed
        assert sealed != encrypt_secret(app, "tok-very-secret-1234")  # random IV
        assert decrypt_secret(sealed) == "tok-very-secret-1234"


def test_another_key_cannot_read_it():
    sealed = encrypt_secret(_app(SECRET_KEY="a" * 40), "tok-1")
    with _app(SECRET_KEY="b" * 40).app_context(), pytest.raises(SecretUnreadable):
        decrypt_secret(sealed)


def test_token_key_takes_precedence_over_secret_key():
    sealed = encrypt_secret(_app(SECRET_KEY="a" * 40, TOKEN_KEY="t" * 40), "tok-2")
    with _app(SECRET_KEY="other" * 10, TOKEN_KEY="t" * 40).app_context():
        assert decrypt_secret(sealed) == "tok-2"
    with _app(SECRET_KEY="a" * 40).app_context(), pytest.raises(SecretUnreadable):
        decrypt_secret(sealed)


def test_damaged_value_is_a_clear_error():
    with _app(SECRET_KEY="a" * 40).app_context(), pytest.raises(SecretUnreadable, match="key"):
        decrypt_secret("not-a-fernet-token")


def test_hint_shows_only_the_last_four_characters():
    assert secret_hint("abcdefghijklmnop") == "…mnop"
    assert secret_hint("short") == "…"


def test_a_value_read_once_is_refused_once_the_key_changes():
    """Decrypted values are kept per key: a new key reads nothing an old one read."""
    app = _app(SECRET_KEY="a" * 40)
    sealed = encrypt_secret(app, "tok-3")
    with app.app_context():
        assert decrypt_secret(sealed) == "tok-3"
        assert decrypt_secret(sealed) == "tok-3"
        app.config["SECRET_KEY"] = "c" * 40
        with pytest.raises(SecretUnreadable):
            decrypt_secret(sealed)
        app.config["TOKEN_KEY"] = "a" * 40  # the old material, as the token key: readable again
        assert decrypt_secret(sealed) == "tok-3"
