"""The demo bank database's command line.

    .venvs/rasa/bin/python -m assistant.bank migrate                    # tables to the newest revision
    .venvs/rasa/bin/python -m assistant.bank seed [--date YYYY-MM-DD]   # demo customers (idempotent)
    .venvs/rasa/bin/python -m assistant.bank show [CUSTOMER_ID]          # what the bot will see
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import List, Optional

import sqlalchemy as sa
from alembic.util import CommandError

from assistant import config
from assistant.bank.engine import display_url
from assistant.bank.seed import seed, show


def main(argv: Optional[List[str]] = None) -> int:
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    parser = argparse.ArgumentParser(prog="python -m assistant.bank", description="the demo bank database")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or upgrade the tables to the newest revision (idempotent)")
    revision_cmd = commands.add_parser("revision", help="(developers) write a migration from the models' changes")
    revision_cmd.add_argument("-m", "--message", required=True)
    seed_cmd = commands.add_parser("seed", help="migrate, then (re)write the demo customers")
    seed_cmd.add_argument("--date", default="", help="the day the demo data is relative to (default: today)")
    show_cmd = commands.add_parser("show", help="print a customer's cards and transactions")
    show_cmd.add_argument("customer_id", nargs="?", default=config.bank().demo_customer_id)
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            from assistant.bank.migrate import migrate

            before, after = migrate()
            print(f"migrated {display_url()}: " + (f"already at {after}" if before == after
                                                   else f"{before or 'no revision'} -> {after}"))
        elif args.command == "revision":
            from assistant.bank.migrate import migrate, revision

            migrate()
            revision(args.message)
        elif args.command == "seed":
            today = dt.date.fromisoformat(args.date) if args.date else None
            counts = seed(today=today)
            print(f"seeded {display_url()}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        else:
            print(show(args.customer_id))
    except (sa.exc.SQLAlchemyError, CommandError, ValueError) as error:
        print(f"error: bank database {display_url()}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
