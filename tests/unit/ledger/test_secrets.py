"""SecretBox: Fernet encryption of connection secrets, with rotation."""

from __future__ import annotations

import pytest

from shared.ledger.errors import SecretKeyError
from shared.ledger.secrets import SecretBox, generate_key

SECRETS = {"zuora_client_secret": "zs-123", "acumatica_password": "p@ss"}


def test_encrypt_json_round_trips_and_hides_plaintext():
    box = SecretBox([generate_key()])
    token = box.encrypt_json(SECRETS)
    assert "zs-123" not in token
    assert "p@ss" not in token
    assert box.decrypt_json(token) == SECRETS


def test_decrypt_json_with_wrong_key_says_wrong_key():
    token = SecretBox([generate_key()]).encrypt_json(SECRETS)
    with pytest.raises(SecretKeyError, match="cannot decrypt: wrong LEDGERBRIDGE_SECRET_KEY"):
        SecretBox([generate_key()]).decrypt_json(token)


@pytest.mark.parametrize("keys", [[], [""], ["  "]])
def test_secret_box_without_key_says_set_the_variable(keys):
    with pytest.raises(SecretKeyError, match="set LEDGERBRIDGE_SECRET_KEY"):
        SecretBox(keys)


def test_secret_box_with_malformed_key_names_the_key():
    with pytest.raises(SecretKeyError, match="key #2 is not a Fernet key"):
        SecretBox([generate_key(), "not-a-key"])


def test_from_setting_none_says_set_the_variable():
    with pytest.raises(SecretKeyError, match="set LEDGERBRIDGE_SECRET_KEY"):
        SecretBox.from_setting(None)


def test_rotate_reencrypts_with_first_key_so_old_key_can_be_dropped():
    old, new = generate_key(), generate_key()
    token = SecretBox([old]).encrypt_json(SECRETS)
    rotated = SecretBox.from_setting(f"{new}, {old}").rotate(token)
    assert SecretBox([new]).decrypt_json(rotated) == SECRETS
    with pytest.raises(SecretKeyError):
        SecretBox([old]).decrypt_json(rotated)


def test_rotate_with_no_matching_key_raises():
    token = SecretBox([generate_key()]).encrypt_json(SECRETS)
    with pytest.raises(SecretKeyError, match="wrong LEDGERBRIDGE_SECRET_KEY"):
        SecretBox([generate_key()]).rotate(token)


def test_multiple_keys_decrypt_tokens_of_any_listed_key():
    old, new = generate_key(), generate_key()
    old_token = SecretBox([old]).encrypt_json(SECRETS)
    both = SecretBox([new, old])
    assert both.decrypt_json(old_token) == SECRETS
    assert SecretBox([new]).decrypt_json(both.encrypt_json(SECRETS)) == SECRETS
