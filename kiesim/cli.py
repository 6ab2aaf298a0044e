"""Command line: ``python -m kiesim [--host H] [--port P] [--port-file PATH] [--quiet] [--<knob> VALUE ...]``.

Every ``SimConfig`` field is a flag (``duplicate_callbacks`` -> ``--duplicate-callbacks``);
boolean knobs also take ``--no-<knob>``; list knobs (``api_key``) may be repeated and
take comma-separated values (``--api-key k1,k2 --api-key k3``).  On start the one line
``kiesim listening on http://HOST:PORT`` is printed (flushed) so a parent process can
read the URL; ``--port-file`` also writes that URL to a file.  SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from .config import SimConfig, coerce_knob
from .errors import ConfigError


EPILOG = """\
control routes (no auth):
  GET  /_sim/stats                 totals, plus per-account figures under "accounts"
                                   (named by sha256(key)[:12]), bursts, faults, image cache
  GET|POST /_sim/config            every knob above, by its name (secrets shown as ***)
  POST /_sim/accounts              {"api_key": KEY, "credits": N}: set one account's balance
  POST /_sim/burst                 {"code": 429|455|500, "count": N, "style": "body"|"http",
                                   "api_key": KEY}: the next N createTask calls (of that account,
                                   if given) answer CODE and create nothing; DELETE drops them
  POST /_sim/reset, GET /_sim/tasks[/ID], POST /_sim/tasks/ID/callback
"""


def _knob_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiesim", description="Local simulator of kie.ai's image-generation API.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument("--port-file", type=Path, help="also write the listening URL to this file")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    knobs = parser.add_argument_group("simulator knobs (also settable at runtime: POST /_sim/config)")
    defaults = SimConfig()
    for f in dataclasses.fields(SimConfig):
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else repr(default)
        text = f"{f.metadata.get('help', '')} (default {shown})"
        if f.type in (bool, "bool"):
            knobs.add_argument(_knob_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        elif f.metadata.get("multiple"):
            knobs.add_argument(_knob_flag(f.name), dest=f.name, metavar="VALUE[,VALUE...]", action="append",
                               default=None, help=text + " (repeatable)")
        else:
            knobs.add_argument(_knob_flag(f.name), dest=f.name, metavar="VALUE", default=None, help=text)
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """A ``SimConfig`` from parsed flags; raises ``ConfigError`` naming the bad flag's knob."""
    values = {}
    for f in dataclasses.fields(SimConfig):
        value = getattr(args, f.name)
        if value is not None:
            values[f.name] = coerce_knob(f.name, value)
    return SimConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(f"{_knob_flag(exc.knob)}: {exc.problem}")
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from .server import SimServer  # werkzeug server only when actually serving

    server = SimServer(config, host=args.host, port=args.port)
    url = server.url
    if args.port_file is not None:
        args.port_file.write_text(url + "\n")
    print(f"kiesim listening on {url}", flush=True)

    def _stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
