"""The agent console's command line.

    python -m console [serve] [--host H] [--port P]        # the console (make run starts it)
    python -m console agent-add NAME [--display-name TEXT] [--reset] [--password-stdin]
    python -m console agent-disable NAME
    python -m console agents
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import List, Optional

os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv = ["serve", *argv]
    parser = argparse.ArgumentParser(prog="python -m console", description="the agent console")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the console (CONSOLE_HOST, CONSOLE_PORT)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    add = commands.add_parser("agent-add", help="create a staff account (asks for the password)")
    add.add_argument("name")
    add.add_argument("--display-name", default="", help="the name customers see (default: NAME)")
    add.add_argument("--reset", action="store_true", help="set a new password for an existing account")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    disable = commands.add_parser("agent-disable", help="disable an account and end its sessions")
    disable.add_argument("name")
    commands.add_parser("agents", help="list the staff accounts")
    args = parser.parse_args(argv)

    if args.command == "serve":
        from console.app import main as serve_main

        return serve_main([*(["--host", args.host] if args.host else []),
                           *(["--port", str(args.port)] if args.port else [])])

    import sqlalchemy as sa

    from console import auth
    from console.handoffs import display_url
    from console.store import Store, StoreError

    try:
        store = Store()
    except (sa.exc.SQLAlchemyError, ValueError) as error:
        print(f"error: bank database {display_url()}: {error}", file=sys.stderr)
        return 1
    try:
        if args.command == "agents":
            for agent in store.list_agents():
                print(f"{agent.name:20} {agent.display_name:30} {'disabled' if agent.disabled else 'active'}")
            return 0
        if args.command == "agent-disable":
            if not store.disable_agent(args.name):
                print(f"error: no agent named {args.name!r}", file=sys.stderr)
                return 1
            print(f"disabled {args.name}; their sessions are ended")
            return 0
        name = args.name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            print("error: NAME must be 1-64 letters, digits or . _ - @", file=sys.stderr)
            return 2
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != password:
                print("error: the passwords differ", file=sys.stderr)
                return 2
        try:
            password_hash = auth.hash_password(password)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        created = store.add_agent(name, (args.display_name or name).strip()[:120], password_hash, replace=args.reset)
        print(f"{'created' if created else 'updated'} agent {name} in {display_url()}")
        return 0
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except sa.exc.SQLAlchemyError as error:
        print(f"error: bank database {display_url()}: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
