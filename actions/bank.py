"""Moved to the core package: `assistant.bank`. This alias only keeps bench/answers.py
(`from actions import bank`: demo_rows, seed) working until it imports `from assistant
import bank`; delete it then."""
from assistant.bank import demo_rows, seed  # noqa: F401
