#!/bin/sh
# Container entry point: `entrypoint.sh web|worker|beat|dashboard|flower [extra args]`.
# web, worker, beat and dashboard run their line of the Procfile as it is (one source for the three commands);
# flower runs Celery's monitor on the same broker.  Anything else is run as a command.
set -eu
PROCFILE=${KIE_PROCFILE:-/app/Procfile}
kind=${1:-web}
case "$kind" in
  web|worker|beat|dashboard)
    shift
    line=$(sed -n "s/^$kind: //p" "$PROCFILE")
    [ -n "$line" ] || { echo "entrypoint: no '$kind' line in $PROCFILE" >&2; exit 2; }
    # exec: the process gets the container's signals (SIGTERM starts Celery's warm shutdown)
    eval "exec $line \"\$@\""
    ;;
  flower)
    shift
    exec celery -A worker flower --port="${FLOWER_PORT:-5555}" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
