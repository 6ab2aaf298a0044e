"""``create_app``: the Flask application factory of the simulator.

The app holds one ``Simulator`` in ``app.extensions["kiesim"]`` (also reachable as
``kiesim.simulator_of(app)``); the kie.ai routes come from ``api.py`` and the
``/_sim/`` control routes from ``control.py``.  Nothing is created at import time.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from .api import register_api
from .config import SimConfig
from .control import register_control
from .simulator import Simulator


def create_app(config: SimConfig | None = None) -> Flask:
    """A fresh simulator app; ``config`` defaults to ``SimConfig()`` and is changed in place at runtime."""
    app = Flask("kiesim")
    app.json.sort_keys = False
    sim = Simulator(config if config is not None else SimConfig())
    app.extensions["kiesim"] = sim

    @app.before_request
    def _count_request() -> None:
        if not request.path.startswith("/_sim/"):
            sim.count("requests_total")

    @app.errorhandler(404)
    def _not_found(_exc):
        response = jsonify({"code": 404, "msg": f"Not found: {request.path}"})
        response.status_code = 404
        return response

    @app.errorhandler(405)
    def _bad_method(_exc):
        response = jsonify({"code": 405, "msg": f"Method {request.method} not allowed on {request.path}"})
        response.status_code = 405
        return response

    register_api(app)
    register_control(app)
    return app


def simulator_of(app: Flask) -> Simulator:
    """The ``Simulator`` behind an app made by ``create_app``."""
    return app.extensions["kiesim"]
