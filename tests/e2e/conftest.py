"""Fixtures of the end-to-end tests: one factory for running deployments.

A module says what it needs in a module-level ``DEPLOYMENT`` dict (``Deployment`` options plus ``start``, the
options of ``Deployment.start``) and takes the module-scoped ``dep`` fixture.  A test or fixture that needs a
deployment of its own (a fresh one per test, or a second one) uses ``deploy(name, start=..., **options)`` as a
context manager.  Either way the deployment is stopped and its Redis keys deleted, whatever the test did.
"""

from __future__ import annotations

import contextlib

import pytest

from harness import Deployment


@contextlib.contextmanager
def _deployed(workdir, *, start: dict | None = None, **options):
    deployment = Deployment(workdir, **options)
    try:
        yield deployment.start(**(start or {}))
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def deploy(tmp_path_factory):
    """``deploy(name, start={...}, **Deployment options)``: a context manager yielding a started deployment."""
    def factory(name: str = "deployment", *, start: dict | None = None, **options):
        return _deployed(tmp_path_factory.mktemp(name), start=start, **options)
    return factory


@pytest.fixture(scope="module")
def dep(request, deploy):
    """The module's deployment, as its ``DEPLOYMENT`` dict describes it."""
    spec = dict(getattr(request.module, "DEPLOYMENT", {}))
    with deploy(request.module.__name__.rsplit(".", 1)[-1], **spec) as deployment:
        yield deployment
