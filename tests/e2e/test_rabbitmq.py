"""The same chain with RabbitMQ as the broker (Redis stays the job store and result backend)."""

import socket

import pytest

from harness import AMQP_URL, unique


def _rabbit_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _rabbit_up(), reason="RabbitMQ is not running on 127.0.0.1:5672")


DEPLOYMENT = dict(callbacks=True, hmac=True, broker_url=AMQP_URL, start=dict(concurrency=2))


def test_chain_with_rabbitmq_broker(dep):
    prompt = unique("rabbit chain")
    tag = unique("amqp").replace(" ", "-")
    res = (dep.generate(prompt) | dep.download() | dep.user_task(tag)).apply_async()
    assert res.get(timeout=60)["tag"] == tag
    [received] = dep.wait_recorded(tag)
    assert received["state"] == "success" and received["files"]
    assert dep.creates_for(prompt) == 1
    # the worker really consumed from RabbitMQ
    assert "amqp://" in dep.stack.log_of("w1")
