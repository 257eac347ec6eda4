"""Input checks of the REST channel, and who the channels say the customer is (the live
server is covered in test_stack_e2e, test_identity_e2e and browser/test_channel_security)."""
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from assistant import config
from addons import channels
from addons.channels import check_body
from ops import settings


@pytest.mark.parametrize(
    "body",
    [b'{"sender": "a", "message": "hi"}', b'{"message": ""}', '{"message": "caf\u00e9"}'.encode()],
)
def test_valid_bodies_pass(body):
    assert check_body(body) is None


@pytest.mark.parametrize(
    "body, status",
    [
        (b"", 400),
        (b"null", 400),
        (b'"text"', 400),
        (b'{"sender": "", "message": "hi"}', 400),
        (b'{"sender": "a", "message": 42}', 400),
        (json.dumps({"message": "x" * 4001}).encode(), 413),
    ],
)
def test_invalid_bodies_get_an_error(body, status):
    error = check_body(body, max_chars=4000)
    assert error is not None and error.status == status
    assert "error" in json.loads(error.body)


# --- who the customer is (docs/security.md, "Identity") -----------------------------------

def _request(body, authorization=None, token_arg=None):
    """What RestInput.get_metadata reads of a Sanic request."""
    return SimpleNamespace(json=body, headers={"Authorization": authorization} if authorization else {},
                           args={"token": token_arg} if token_arg else {})


CLAIM = {"sender": "a", "message": "I lost my card", "metadata": {"customer_id": "C1002", "locale": "en"}}


def test_rest_without_a_token_configured_identifies_nobody(monkeypatch):
    monkeypatch.delenv("REST_CHANNEL_TOKEN", raising=False)
    rest = channels.RestInput()
    assert rest.get_metadata(_request(CLAIM)) == {"customer_id": "C1002", "locale": "en"}
    forged = {**CLAIM, "metadata": {"verified_customer_id": "C1002"}}
    assert rest.get_metadata(_request(forged, "Bearer anything")) == {}


def test_rest_trusts_the_customer_id_of_the_caller_with_the_token(monkeypatch):
    monkeypatch.setenv("REST_CHANNEL_TOKEN", "s3cret")
    rest = channels.RestInput()
    assert rest.get_metadata(_request(CLAIM, "Bearer s3cret"))["verified_customer_id"] == "C1002"
    assert rest.get_metadata(_request(CLAIM, token_arg="s3cret"))["verified_customer_id"] == "C1002"
    for wrong in (_request(CLAIM), _request(CLAIM, "Bearer nope")):
        assert "verified_customer_id" not in rest.get_metadata(wrong)
    # a forged key is removed even for the authenticated caller: only customer_id counts
    forged = {**CLAIM, "metadata": {"verified_customer_id": "C1003"}}
    assert rest.get_metadata(_request(forged, "Bearer s3cret")) == {}
    for odd in ("", "   ", 42, ["C1002"], "C" * 65):
        body = {**CLAIM, "metadata": {"customer_id": odd}}
        assert "verified_customer_id" not in rest.get_metadata(_request(body, "Bearer s3cret"))


def test_metadata_must_be_an_object():
    assert check_body(b'{"message": "hi", "metadata": {"customer_id": "C1002"}}') is None
    assert check_body(b'{"message": "hi", "metadata": null}') is None
    for body in (b'{"message": "hi", "metadata": "C1002"}', b'{"message": "hi", "metadata": ["C1002"]}'):
        error = check_body(body)
        assert error is not None and error.status == 400
    assert channels.client_metadata('{"verified_customer_id": "C1", "a": 1}') == {"a": 1}
    assert channels.client_metadata("not json") == channels.client_metadata(None) == {}


def test_the_channels_refuse_settings_that_trust_an_unauthenticated_identity(monkeypatch):
    for name in ("BANK_CUSTOMER_ID_CHANNELS", "SOCKETIO_JWT_KEY", "SOCKETIO_JWT_METHOD"):
        monkeypatch.delenv(name, raising=False)
    assert channels.identity_settings_error() is None
    monkeypatch.setenv("BANK_CUSTOMER_ID_CHANNELS", "rest")
    error = channels.identity_settings_error()
    assert error.startswith("refusing to start: BANK_CUSTOMER_ID_CHANNELS is set") and "\n" not in error
    with pytest.raises(SystemExit, match="BANK_CUSTOMER_ID_CHANNELS"):
        channels.RestInput.from_credentials(None)
    with pytest.raises(SystemExit, match="BANK_CUSTOMER_ID_CHANNELS"):
        channels.SocketIOInput.from_credentials({})
    monkeypatch.delenv("BANK_CUSTOMER_ID_CHANNELS")
    monkeypatch.setenv("SOCKETIO_JWT_KEY", "k" * 32)
    monkeypatch.setenv("SOCKETIO_JWT_METHOD", "none")
    with pytest.raises(SystemExit, match="unsigned"):
        channels.SocketIOInput.from_credentials({})


def test_the_action_server_refuses_the_old_trust_setting():
    """`python -m actions.server` exits with one line before anything else, as it starts."""
    env = {"PATH": "/usr/bin:/bin", "BANK_CUSTOMER_ID_CHANNELS": "rest"}
    done = subprocess.run([sys.executable, "-m", "actions.server", "--port", "0"], cwd=settings.ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "action server: refusing to start: BANK_CUSTOMER_ID_CHANNELS is set")
    assert config.identity_settings_error({"BANK_CUSTOMER_ID_CHANNELS": " "}) is None


def test_only_the_channels_that_strip_the_verified_key_are_configured():
    """A stock Rasa channel would pass a client's `verified_customer_id` through."""
    credentials = yaml.safe_load((settings.ROOT / "credentials.yml").read_text())
    assert set(credentials) == {"addons.channels.RestInput", "addons.channels.SocketIOInput"}
    assert channels.VERIFIED_CUSTOMER_KEY == config.VERIFIED_CUSTOMER_KEY


def test_the_demo_page_signs_in_the_demo_customer(monkeypatch):
    """ops/web.py's /config.js: the demo identity reaches the bot only as a signed claim."""
    import jwt

    from ops import web

    monkeypatch.setenv("SOCKETIO_JWT_KEY", "demo-key-0123456789abcdef0123456789")
    monkeypatch.delenv("SOCKETIO_JWT_METHOD", raising=False)
    token = web.widget_config("localhost:8080")["token"]
    claims = jwt.decode(token, "demo-key-0123456789abcdef0123456789", algorithms=["HS256"])
    assert claims["customer_id"] == web.DEMO_CUSTOMER_ID == "C1001" and claims["exp"] > claims["iat"]
    monkeypatch.setattr(web, "DEMO_CUSTOMER_ID", "")
    assert "customer_id" not in jwt.decode(web.widget_config("localhost:8080")["token"],
                                           "demo-key-0123456789abcdef0123456789", algorithms=["HS256"])
    monkeypatch.delenv("SOCKETIO_JWT_KEY")
    assert "token" not in web.widget_config("localhost:8080")  # no key: socket.io is anonymous
