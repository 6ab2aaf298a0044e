"""The dashboard's pages and fragments.  Full pages render once; the live parts (the jobs table, the
limiter panel) are fragments that htmx polls every few seconds.  Retry and cancel are POSTs with a CSRF
token that call ``worker.ops.actions``, the functions ``kie-queue retry`` and ``kie-queue cancel`` call."""

from __future__ import annotations

import flask

from worker.ops import actions, queries

from . import access, charts, data

bp = flask.Blueprint("dashboard", __name__)


def _kie():
    return flask.current_app.extensions["kie"]


def _seconds(value) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _time(iso) -> str:
    return "–" if not iso else iso.replace("T", " ").rstrip("Z")[:19]


FILTERS = {"secs": _seconds, "when": _time}


def _filters() -> dict:
    args = flask.request.args
    state = args.get("state") if args.get("state") in data.STATES else ""
    age = args.get("age") if args.get("age") in data.AGES else ""
    return {"state": state, "age": age, "q": (args.get("q") or "").strip()[:200]}


@bp.get("/")
def jobs():
    f = _filters()
    rows = data.jobs_table(_kie()["rt"], state=f["state"], age=f["age"], search=f["q"])
    return flask.render_template("jobs.html", rows=rows, f=f, states=data.STATES, ages=data.AGES,
                                 show_tenant=data.has_tenants(rows))


@bp.get("/fragments/jobs")
def jobs_fragment():
    f = _filters()
    rows = data.jobs_table(_kie()["rt"], state=f["state"], age=f["age"], search=f["q"])
    return flask.render_template("_jobs_table.html", rows=rows, f=f, show_tenant=data.has_tenants(rows))


@bp.get("/jobs/<path:job_id>")
def job(job_id: str):
    view = queries.find_job(_kie()["rt"], job_id)
    if view is None:
        return flask.render_template("missing.html", job_id=job_id), 404
    record = view.to_json()
    return flask.render_template("job.html", job=record, times=data.durations(record),
                                 message=flask.request.args.get("done", "")[:80])


@bp.post("/jobs/<path:job_id>/<any(retry, cancel):action>")
def act(job_id: str, action: str):
    if not access.csrf_ok(flask.request.form.get("csrf")):
        return flask.Response("bad or missing CSRF token", status=400, mimetype="text/plain")
    kie = _kie()
    run = actions.retry if action == "retry" else actions.cancel
    [outcome] = run(kie["rt"], kie["producer"], [job_id])
    return flask.redirect(flask.url_for("dashboard.job", job_id=outcome.get("job_id") or job_id,
                                        done=outcome["outcome"]), code=303)


@bp.get("/files/<path:job_id>/<int:n>")
def result_file(job_id: str, n: int):
    found = data.result_file(_kie()["rt"], job_id, n)
    if found is None:
        flask.abort(404)
    chunks, content_type = found
    response = flask.Response(flask.stream_with_context(chunks), mimetype=content_type)
    response.headers["Content-Disposition"] = "inline"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _limiter_context() -> dict:
    rt = _kie()["rt"]
    status = queries.limiter_status(rt)
    remaining, why = data.credits(rt)
    history = data.create_history(rt)
    return {"status": status, "credits": remaining, "credits_error": why,
            "chart": charts.creates_chart(history, limit=status["limit"], window=status["window_seconds"]),
            "last_minute": sum(history[-60:])}


@bp.get("/limiter")
def limiter():
    return flask.render_template("limiter.html", **_limiter_context())


@bp.get("/fragments/limiter")
def limiter_fragment():
    return flask.render_template("_limiter_panel.html", **_limiter_context())


@bp.get("/gallery")
def gallery():
    return flask.render_template("gallery.html", items=data.gallery(_kie()["rt"]))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if flask.request.method == "POST":
        if access.check_token(flask.request.form.get("token", "")):
            flask.session.clear()
            flask.session["auth"] = True
            target = flask.request.args.get("next", "/")
            return flask.redirect(target if target.startswith("/") and not target.startswith("//") else "/",
                                  code=303)
        error = "That token is not right."
    return flask.render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout():
    flask.session.clear()
    return flask.redirect(flask.url_for("dashboard.login"), code=303)
