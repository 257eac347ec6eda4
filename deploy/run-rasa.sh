#!/bin/sh
# Rasa in a container (the assistant image's command), as ops/stack.py starts it:
# deploy/endpoints.yml (the action server at ACTION_ENDPOINT_URL), the HTTP API behind
# RASA_API_TOKEN, browser origins from CORS_ORIGINS (space- or comma-separated; unset:
# none, as no demo page runs beside it), listening on BIND_HOST (0.0.0.0 in the image).
set -eu
set -f  # CORS_ORIGINS may be "*": no file name expansion
origins=$(printf '%s' "${CORS_ORIGINS:-}" | tr ',' ' ')
# shellcheck disable=SC2086  # $origins: one argument per origin
exec rasa run --model models --endpoints deploy/endpoints.yml --credentials credentials.yml \
  --interface "${BIND_HOST:-0.0.0.0}" --port 5005 --cors $origins \
  --enable-api --auth-token "${RASA_API_TOKEN:?set RASA_API_TOKEN}"
