"""Input checks of the REST channel (the live server is covered in test_stack_e2e)."""
import json

import pytest

from addons.channels import check_body


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
