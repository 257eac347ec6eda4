"""Entry point of the operator CLI; heavy imports happen inside each command."""
from __future__ import annotations

import argparse
import os
import sys

# Rasa 3.6 pins SQLAlchemy 1.4; its 2.0 migration banner is noise for operators.
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")


def main(argv=None) -> int:
    from ops import settings

    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("import-data", help="build NLU training/validation files from ../shared/data")
    commands.add_parser("train", help="train a Rasa model into models/")
    evaluate = commands.add_parser("evaluate", help="NLU report on the validation split into results/nlu")
    evaluate.add_argument("--model", default="", help="model file (default: the latest in models/)")
    evaluate.add_argument("--quick", action="store_true", help="skip `rasa test nlu`, only the summary")
    evaluate.add_argument("--min-accuracy", type=float, default=0.0, help="fail below this in-scope accuracy")
    retention = commands.add_parser("retention", help="delete conversations older than N days")
    retention.add_argument("--older-than-days", type=float, required=True)
    retention.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    erase = commands.add_parser("erase", help="erase one sender's conversation, handoffs, the sender id on "
                                               "disputes and log lines (GDPR)")
    erase.add_argument("sender_id")
    erase.add_argument("--dry-run", action="store_true", help="only report what would be erased")
    erase.add_argument("--log-dir", default="", help="the logs to erase from (default: build/logs)")
    analytics = commands.add_parser("analytics", help="report on conversations: text, HTML with plots, candidates.yml")
    analytics.add_argument("--days", type=float, default=None, help="only the last N days")
    analytics.add_argument("--out", default="results/analytics", help="output folder")
    promote = commands.add_parser("promote", help="gate a model, add it to the registry, hot-swap it into Rasa")
    promote.add_argument("model", nargs="?", default="", help="model file (default: the newest in models/)")
    promote.add_argument("--rasa-url", default="", help="running Rasa to load it into (default: the local one)")
    promote.add_argument("--no-swap", action="store_true", help="register only; do not touch a running Rasa")
    promote.add_argument("--force", action="store_true", help="skip the gate (records metrics anyway)")
    rollback = commands.add_parser("rollback", help="load the previously promoted model again")
    rollback.add_argument("--rasa-url", default="")
    rollback.add_argument("--no-swap", action="store_true")
    commands.add_parser("models", help="list the model registry")
    exporter = commands.add_parser("exporter", help="Prometheus /metrics for Rasa's turns, read from the tracker store")
    exporter.add_argument("--host", default=settings.BIND_HOST)
    exporter.add_argument("--port", type=int, default=settings.EXPORTER_PORT)
    web = commands.add_parser("web", help="serve the demo page with the chat widget")
    web.add_argument("--host", default=settings.BIND_HOST)
    web.add_argument("--port", type=int, default=settings.WEB_PORT)
    handoffs = commands.add_parser("handoffs", help="conversations waiting for a person (the handoff queue)")
    handoffs.add_argument("--all", action="store_true", help="also the released ones")
    release = commands.add_parser("release", help="give a handed-off conversation back to the bot")
    release.add_argument("sender_id")
    release.add_argument("--rasa-url", default="", help="the running Rasa (default: the local one)")
    release.add_argument("--by", default="", help="who releases it (default: the login name)")
    agent_add = commands.add_parser("agent-add", help="create an agent console account (python -m console agent-add)")
    agent_add.add_argument("name")
    agent_add.add_argument("--display-name", default="")
    agent_add.add_argument("--reset", action="store_true", help="set a new password for an existing account")
    agent_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    commands.add_parser("status", help="is every part up, and what does it run")
    commands.add_parser("run", help="start generator, action server and Rasa; Ctrl-C stops them")
    shell = commands.add_parser("shell", help="chat with the running assistant in the terminal")
    shell.add_argument("--sender", default="", help="conversation id (default: a new one)")
    args = parser.parse_args(argv)

    if args.command == "import-data":
        from ops.data import DataError, import_data

        try:
            counts = import_data()
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(", ".join(f"{k}={v}" for k, v in counts.items()))
        return 0
    if args.command == "train":
        from ops.train import TrainingError, train

        try:
            train()
        except TrainingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command == "evaluate":
        from pathlib import Path

        from ops import settings
        from ops.evaluate import EvaluationError, evaluate
        from ops.train import latest_model

        model = Path(args.model) if args.model else latest_model()
        if model is None:
            print("error: no model in models/: run `make train`", file=sys.stderr)
            return 2
        try:
            evaluate(model, settings.ROOT / "results" / "nlu", not args.quick, args.min_accuracy)
        except EvaluationError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if args.command in ("retention", "erase"):
        import sqlalchemy.exc

        from ops import retention as r

        try:
            if args.command == "retention":
                if args.older_than_days < 0:
                    print("error: --older-than-days must not be negative", file=sys.stderr)
                    return 2
                report = r.delete_older_than(args.older_than_days, args.dry_run)
            else:
                from pathlib import Path

                from ops import settings

                report = r.erase_sender(args.sender_id, args.dry_run,
                                        log_dir=Path(args.log_dir) if args.log_dir else settings.LOG_DIR)
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"error: tracker store at {r.tracker_store_url()} or bank database: {error}", file=sys.stderr)
            return 1
        print(("would delete " if args.dry_run else "deleted ") + str(report))
        return 0
    if args.command == "analytics":
        from pathlib import Path

        import sqlalchemy.exc

        from assistant.conversations import tracker_store_url
        from ops import settings
        from ops.analytics import to_text, write_report

        out = Path(args.out) if Path(args.out).is_absolute() else settings.ROOT / args.out
        try:
            result = write_report(tracker_store_url(), out, args.days)
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"error: tracker store: {error}", file=sys.stderr)
            return 1
        print(to_text(result) + f"written to {out}/ (analytics.txt, analytics.html, candidates.yml)")
        return 0
    if args.command in ("promote", "rollback", "models"):
        import json
        from pathlib import Path

        from ops import lifecycle, settings
        from ops.registry import Registry
        from ops.train import latest_model

        if args.command == "models":
            state = Registry().load()
            for v in state["versions"]:
                mark = "*" if v["version"] == state["current"] else " "
                print(f"{mark} v{v['version']:<4} {v['time']}  F1 {v['metrics']['macro_f1_in_scope']:.2%}  "
                      f"data {v['data_hash']}  config {v['config_hash']}  by {v['promoted_by']}  {v['source']}")
            return 0
        url = None if args.no_swap else (args.rasa_url or f"http://127.0.0.1:{settings.RASA_PORT}")
        try:
            if args.command == "promote":
                model = Path(args.model) if args.model else latest_model()
                if model is None or not model.is_file():
                    print("error: no model to promote: run `make train`", file=sys.stderr)
                    return 2
                entry = lifecycle.promote(model.resolve(), url, force=args.force)
            else:
                entry = lifecycle.rollback(url)
        except lifecycle.GateRefused as error:
            print(f"refused: {error}", file=sys.stderr)
            return 3
        except lifecycle.SwapError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"current model: v{entry['version']} ({entry['source']}) " + json.dumps(entry["metrics"]))
        return 0
    if args.command == "exporter":
        from assistant.conversations import tracker_store_url
        from ops.exporter import serve

        print(f"serving Rasa turn metrics on http://{args.host}:{args.port}/metrics", flush=True)
        serve(tracker_store_url(), args.host, args.port)
        return 0
    if args.command in ("handoffs", "release"):
        import sqlalchemy.exc

        from assistant import bank
        from ops import handoff

        try:
            if args.command == "handoffs":
                print(handoff.queue_text(bank.list_handoffs(include_released=args.all)))
                return 0
            result = handoff.release(args.sender_id, args.rasa_url or None, released_by=args.by or None)
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"error: bank database {bank.display_url()}: {error}", file=sys.stderr)
            return 1
        except handoff.HandoffError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"released {args.sender_id} to the bot (by {result['handoff'].released_by})")
        for message in result["messages"]:
            if message.get("text"):
                print(f"  bot: {message['text']}")
        return 0
    if args.command == "agent-add":
        from console.__main__ import main as console_main

        return console_main(["agent-add", args.name, *(["--display-name", args.display_name] if args.display_name else []),
                             *(["--reset"] if args.reset else []), *(["--password-stdin"] if args.password_stdin else [])])
    if args.command == "web":
        from ops.web import serve

        serve(args.host, args.port)
        return 0
    if args.command == "status":
        from ops.status import status

        return status()
    if args.command == "run":
        from ops.run import run

        return run()
    if args.command == "shell":
        from ops.shell import shell

        return shell(args.sender)
    return 2


if __name__ == "__main__":
    sys.exit(main())
