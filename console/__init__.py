"""The agent console: support staff take over handed-off conversations and answer the
customer in their chat (docs/operations.md, "The agent console").

    .venvs/rasa/bin/python -m ops agent-add NAME     # create a staff account
    .venvs/rasa/bin/python -m console                # serve it on CONSOLE_PORT (make run does)

- settings.py: every setting, from the environment;
- handoffs.py: the one place that reaches the bank database's handoff queue and the
  release through Rasa (so a move of that code changes one import);
- store.py: the console's own tables in the bank database (agents, sessions, claims,
  notes); the atomic claim;
- auth.py: argon2 password hashes, server-side sessions, CSRF tokens, the login limit;
- rasa_api.py: Rasa's HTTP API (transcript, agent replies, close) with RASA_API_TOKEN;
- knowledge.py: a word search over the knowledge pages, for replies built from them;
- metrics.py: Prometheus metrics of the handoffs;
- app.py: the aiohttp web app (pages and JSON API).
"""
