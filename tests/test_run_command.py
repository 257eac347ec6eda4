"""The README's run command: starts the services and the chat page, answers, and Ctrl-C stops all."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from ops import settings
from ops.stack import free_port, post


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_starts_everything_and_ctrl_c_stops_everything(tmp_path, trained_model):
    ports = {"RASA_PORT": free_port(), "ACTIONS_PORT": free_port(), "GENERATOR_PORT": free_port(), "WEB_PORT": free_port(),
             "CONSOLE_PORT": free_port()}
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "TRACKER_STORE_URL": f"sqlite:///{tmp_path / 'tracker.db'}",
    }
    for name in ("GENERATOR_URL", "EMBEDDINGS_URL", "SOCKETIO_JWT_KEY", "BANK_DEMO_CUSTOMER_ID"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", "run"], cwd=settings.ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + settings.STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "The assistant is up." in line:
                break
        assert any("The assistant is up." in line for line in output), "".join(output)

        body = json.dumps({"sender": "run-command", "message": "my card still hasn't arrived"}).encode()
        status, reply = post(f"http://127.0.0.1:{ports['RASA_PORT']}/webhooks/rest/webhook", body)
        assert status == 200 and "Track delivery" in reply[0]["text"]

        page_url = f"http://127.0.0.1:{ports['WEB_PORT']}"
        with urllib.request.urlopen(page_url, timeout=10) as page:
            assert '<script src="/widget/lakeside-chat.js"' in page.read().decode()
        with urllib.request.urlopen(f"{page_url}/config.js", timeout=10) as config:
            script = config.read().decode()
        assert f'"serverUrl": "http://127.0.0.1:{ports["RASA_PORT"]}"' in script
        _the_demo_page_signs_in_the_demo_customer(script, f"http://127.0.0.1:{ports['RASA_PORT']}", page_url)
        with urllib.request.urlopen(f"{page_url}/widget/lakeside-chat.js", timeout=10) as script:
            assert script.headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
        # the agent console: its sign-in page (the console itself needs a session)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['CONSOLE_PORT']}/", timeout=10) as console:
            assert console.url.endswith("/login") and 'action="/login"' in console.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=90)
    assert process.returncode == 0, "".join(output) + remaining
    assert "stopped." in remaining
    assert not any(_port_open(port) for port in ports.values())


def _the_demo_page_signs_in_the_demo_customer(config_js: str, rasa_url: str, page_url: str) -> None:
    """The run command gives Rasa and the page one SOCKETIO_JWT_KEY (a new one per run):
    socket.io needs the page's token, whose claim makes the visitor the demo customer."""
    import queue

    import jwt
    import socketio

    config = json.loads(config_js.split("=", 1)[1].strip().rstrip(";"))
    assert jwt.decode(config["token"], options={"verify_signature": False})["customer_id"] == "C1001"
    refused = socketio.Client(reconnection=False, websocket_extra_options={"origin": page_url})
    try:
        refused.connect(rasa_url, transports=["websocket"], wait_timeout=10)
        raise AssertionError("socket.io accepted a connection without the page's token")
    except socketio.exceptions.ConnectionError:
        pass
    client = socketio.Client(reconnection=False, websocket_extra_options={"origin": page_url})
    replies = queue.Queue()
    client.on("bot_uttered", replies.put)
    client.connect(rasa_url, auth={"token": config["token"]}, transports=["websocket"], wait_timeout=10)
    try:
        client.emit("session_request", {"session_id": "run-command-demo"})
        time.sleep(1)
        client.emit("user_uttered", {"message": "I lost my card", "session_id": "run-command-demo"})
        messages = [replies.get(timeout=60)]
        while not messages[-1].get("quick_replies"):
            messages.append(replies.get(timeout=60))
    finally:
        client.disconnect()
    # the form asks about the demo customer's cards (build/bank.db), not how to sign in
    assert "I can freeze it for you now" in messages[-1]["text"], messages


def test_an_api_token_that_starts_with_a_dash_reaches_rasa():
    """token_urlsafe() starts with "-" one time in 64; `rasa run` must still get it."""
    import argparse

    from rasa.cli import run as rasa_run

    from ops import stack

    parser = argparse.ArgumentParser()
    rasa_run.add_subparser(parser.add_subparsers(), parents=[])
    args = parser.parse_args(["run", *stack.api_args("-rV3_x")])
    assert args.enable_api and args.auth_token == "-rV3_x"
