"""kiesim: a local simulator of kie.ai's asynchronous image-generation API.

Written from kie.ai's public documentation alone and importing nothing from ``worker`` or ``webhook``,
so a misreading of the upstream in the product is not silently shared by its stand-in.

Public interface:

- ``create_app(config=None) -> flask.Flask`` and ``SimConfig`` (every knob);
- ``SimServer`` (threaded werkzeug server in a background thread, port 0 allowed);
- ``python -m kiesim`` / ``kiesim.cli.main(argv)``.

Each configured API key is an account of its own (rate limit windows, credit balance,
figures in ``/_sim/stats`` under ``sha256(key)[:12]``).  Result images are realistic
(~1024 px, PNG 1-2 MB) unless ``small_images``.  Fault knobs (``duplicate_rate``,
``early_rate``, ``late_rate``, ``lose_callbacks``, ...) and ``POST /_sim/burst`` serve
chaos tests; ``seed`` makes their choices reproducible.

Modules: ``config`` (knobs), ``schemas`` (createTask validation), ``directives``
(``[sim:...]`` in prompts), ``ratelimit`` (sliding window), ``tasks`` (task timeline and
views), ``images`` (result files and their cache), ``callbacks`` (bodies, signing, one
POST), ``scheduler`` (timed jobs on worker threads), ``simulator`` (shared state,
accounts, bursts and verdicts), ``api`` / ``control`` (routes), ``app`` (factory),
``server``, ``cli``, ``errors``.
"""

from .app import create_app, simulator_of
from .config import SimConfig
from .errors import ConfigError, InvalidRequest, KiesimError, UnknownModel
from .server import SimServer

__all__ = ["create_app", "simulator_of", "SimConfig", "SimServer",
           "KiesimError", "ConfigError", "InvalidRequest", "UnknownModel"]
