"""The claiming Redis transport (``worker.broker.redis_claims``) against a real Redis, through kombu itself:
what a stock kombu producer sends is taken in kombu's order, recorded as unacknowledged in the same step
(verbatim), waited for without being taken, and restored by kombu's own restore."""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu import transport as kombu_transport

from worker.broker import redis_claims

URL = "redis://127.0.0.1:6379/5"


@pytest.fixture()
def conn():
    redis_claims.install()
    with Connection(URL) as connection:
        yield connection


@pytest.fixture()
def queue():
    name = f"claims-{secrets.token_hex(4)}"
    yield Queue(name, Exchange(name), routing_key=name)
    client = redis.Redis.from_url(URL)
    client.delete(name, *(f"{name}\x06\x16{p}" for p in (3, 6, 9)))


def publish(queue, body, **options):
    """Publish as any producer does: kombu's stock transport (not the claiming one)."""
    with Connection(URL, transport="kombu.transport.redis:Transport") as c:
        c.Producer().publish(body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue],
                             serializer="json", **options)


def consume(conn, queues, n, timeout=10.0, on_message=None):
    """Drain until ``n`` messages arrived; each is acked after ``on_message`` looked at it."""
    got = []

    def callback(body, message):
        if on_message:
            on_message(body, message)
        got.append((body, time.monotonic()))
        message.ack()

    with conn.Consumer(queues, callbacks=[callback], accept=["json"]):
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    return got


def test_install_points_the_redis_schemes_at_the_claiming_transports(conn):
    assert type(conn.transport) is redis_claims.Transport
    assert isinstance(conn.default_channel, redis_claims.Channel)
    assert kombu_transport.resolve_transport("sentinel") is redis_claims.SentinelTransport
    assert kombu_transport.resolve_transport("rediss") is redis_claims.Transport


def test_each_message_is_recorded_unacked_verbatim_when_taken_and_the_order_is_kombus(conn, queue):
    client = conn.default_channel.client
    bodies = [{"n": 0, "args": [], "kwargs": {}}, {"n": 1, "args": [], "kwargs": {}}, {"n": 2, "args": [[]]}]
    publish(queue, bodies[0])
    publish(queue, bodies[1])
    publish(queue, bodies[2], priority=9)  # kombu's Redis: a higher number is a lower priority

    seen = []

    def check(body, message):
        record = client.hget("unacked", message.delivery_tag)
        assert record is not None, "delivered but not recorded as unacknowledged"
        raw, exchange, routing_key = json.loads(record)
        assert raw == message._raw and (exchange, routing_key) == (queue.name, queue.name)
        assert client.zscore("unacked_index", message.delivery_tag) is not None
        seen.append(body)

    consume(conn, [queue], 3, on_message=check)
    assert seen == bodies  # empty lists kept (no re-encoding), FIFO, the priority step last
    assert client.llen(queue.name) == 0


def test_a_consumer_waiting_on_an_empty_queue_gets_a_later_message_and_the_wait_takes_nothing(conn, queue):
    other = Queue(f"{queue.name}-b", Exchange(f"{queue.name}-b"), routing_key=f"{queue.name}-b")
    sent = {}

    def later():
        time.sleep(0.6)
        sent["a"] = time.monotonic()
        publish(queue, {"n": "a"})
        time.sleep(0.6)
        sent["b"] = time.monotonic()
        publish(other, {"n": "b"})

    threading.Thread(target=later, daemon=True).start()
    got = consume(conn, [queue, other], 2)
    assert [body["n"] for body, _ in got] == ["a", "b"]
    for body, at in got:  # woken by the bell (first list) or the next claim: within the 1 s brpop_timeout
        assert at - sent[body["n"]] < conn.default_channel.brpop_timeout + 0.5
    redis.Redis.from_url(URL).delete(other.name)


def test_basic_get_claims_too(conn, queue):
    publish(queue, {"n": "got"})
    message = queue(conn.default_channel).get(accept=["json"])
    assert message.payload == {"n": "got"}
    assert conn.default_channel.client.hexists("unacked", message.delivery_tag)
    message.ack()
    assert not conn.default_channel.client.hexists("unacked", message.delivery_tag)


def test_a_claimed_message_never_acked_is_restored_by_kombu(conn, queue):
    """What a dead worker leaves: the message claimed, no ack.  kombu's restore puts it back on its list."""
    publish(queue, {"n": "held"})
    held = []
    channel = conn.default_channel
    with conn.Consumer([queue], callbacks=[lambda body, message: held.append(message)], accept=["json"]):
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=0.5)
            except TimeoutError:
                pass
    tag = held[0].delivery_tag
    assert channel.client.llen(queue.name) == 0 and channel.client.hexists("unacked", tag)
    channel.qos.restore_by_tag(tag)
    assert channel.client.llen(queue.name) == 1 and not channel.client.hexists("unacked", tag)
    channel.qos._delivered.pop(tag, None)  # this process forgets it, as a dead one would
    again = consume(conn, [queue], 1)
    assert again[0][0] == {"n": "held"}
