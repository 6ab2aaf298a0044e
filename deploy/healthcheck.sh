#!/bin/sh
# Container health check, by process type (the first argument the entry point got, in KIE_PROCESS):
#   web     GET /healthz answers 200 (Redis and the broker reachable)
#   worker  the worker answers a Celery ping within 10 s
#   beat    always healthy while its process runs (a dead beat ends the container)
#   flower  GET / answers
set -eu
case "${KIE_PROCESS:-web}" in
  web)
    exec python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=5)"
    ;;
  worker)
    exec celery -A worker inspect ping --timeout 10 --destination "celery@$(hostname)" >/dev/null
    ;;
  flower)
    exec python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('FLOWER_PORT', '5555'), timeout=5)"
    ;;
  *)
    exit 0
    ;;
esac
