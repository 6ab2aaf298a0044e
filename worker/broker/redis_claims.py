"""kombu's Redis transport with an atomic hand-over of each message to a worker (the *claim*).

kombu's own Redis channel takes a message off its list with ``BRPOP`` and only then, in a second round
trip, writes it to the unacknowledged hash from which a dead worker's messages are restored.  A worker
SIGKILLed between the two loses that message for good, and so does one killed while a ``BRPOP`` reply
waits unread in its socket (kombu leaves it there while every pool process is busy).  Here a channel
never takes a message off its list without recording it in the same step:

* **claim**: one Lua script (``claim.lua``) takes the first message off the first non-empty list, in
  kombu's priority order, and writes it to the unacked hash and index, atomically;
* **bell**: when every list was empty, the channel waits with ``BLMOVE q q RIGHT RIGHT`` on its first
  list: it returns as soon as that list holds a message and leaves the list as it was (a rotation of
  the list onto itself), or after ``brpop_timeout``; then the channel claims again.  A message on one of
  the channel's other lists (a second queue, a priority step) is claimed at the next claim, at the
  latest ``brpop_timeout`` (1 s) after it arrived.

A message claimed by a worker that then dies is in the unacked hash, so kombu's visibility-timeout
restore brings it back like any other message a dead worker held.  Under load a message costs one
round trip (the claim; kombu's path costs two), idle it costs a bell and a claim.  The wire format, the
keys and the unacked records are kombu's own, so producers (any language) and kombu's restore, purge
and inspection tools see no difference.  Needs Redis >= 6.2 (``BLMOVE``); on an older server, or with
``ack_emulation`` off, a channel behaves exactly as kombu's.

:func:`install` points kombu's ``redis``, ``rediss`` and ``sentinel`` URL schemes at these classes for
the process (so a failover that re-resolves the URL keeps them); ``worker.celery_app`` and
``worker.celery_conf.producer`` call it before their first connection.  Failpoint
``broker.after_claim`` stops a worker right after a claim, before the message reaches Celery.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from time import monotonic, time

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from .. import failpoints

CLAIM, BELL = "claim", "bell"
MIN_SERVER = (6, 2)
SCHEMES = {"redis": "Transport", "rediss": "Transport", "sentinel": "SentinelTransport"}


@lru_cache(maxsize=1)
def claim_script() -> str:
    return (Path(__file__).with_name("claim.lua")).read_text()


def install() -> None:
    """Make this process's kombu resolve the Redis URL schemes to the claiming transports."""
    from kombu import transport

    for scheme, cls in SCHEMES.items():
        target = f"{__name__}:{cls}"
        if transport.TRANSPORT_ALIASES.get(scheme) != target:
            transport.TRANSPORT_ALIASES[scheme] = target
            transport._transport_cache.pop(scheme, None)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the unacked write for a message the claim script already recorded."""

    def append(self, message, delivery_tag):
        recorded = self.channel._claimed
        if delivery_tag in recorded:
            recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class ClaimingChannel:
    """The claim/bell consumption described above, mixed into kombu's Redis channels."""

    QoS = QoS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claimed: set[str] = set()
        self._phase = CLAIM
        self._claims = self.ack_emulation and self._server_has_blmove()

    def _server_has_blmove(self) -> bool:
        try:
            info = self.client.info("server")
        except self.ResponseError:  # INFO renamed or refused (managed Redis): assume a current server
            return True
        return _version(str(info.get("redis_version", "7.0"))) >= MIN_SERVER

    def _keys(self, queues) -> list[str]:
        prefix = self.global_keyprefix
        return [prefix + self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]

    def _claim_args(self, keys) -> list:
        prefix = self.global_keyprefix
        return ["EVAL", claim_script(), len(keys) + 2, prefix + self.unacked_key,
                prefix + self.unacked_index_key, *keys, time()]

    def _brpop_start(self, timeout=None):
        if not self._claims:
            return super()._brpop_start(timeout)
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = self._keys(queues)
        if self._phase == CLAIM:
            command = self._claim_args(keys)
        else:
            command = ["BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", timeout or 0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command(*command)

    def _brpop_read(self, **options):
        if not self._claims:
            return super()._brpop_read(**options)
        phase = self._phase
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVAL" if phase == CLAIM else "BLMOVE",
                                                   **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if phase == BELL:  # a message is there (or the wait timed out): claim next
                self._phase = CLAIM
                raise virtual.Empty()
            if not reply:
                self._phase = BELL
                raise virtual.Empty()
            return self._deliver_claimed(reply)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _deliver_claimed(self, reply) -> bool:
        key, item, recorded = reply
        dest = bytes_to_str(key)[len(self.global_keyprefix):].rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        payload = self._payload(item, recorded)
        failpoints.hit("broker.after_claim")
        self.connection._deliver(payload, dest)
        return True

    def _get(self, queue):
        if not self._claims:
            return super()._get(queue)
        with self.conn_or_acquire() as client:
            reply = client.execute_command(*self._claim_args(self._keys([queue])))
            self._maybe_update_queues_expire(client, queue)
        if not reply:
            raise virtual.Empty()
        _key, item, recorded = reply
        return self._payload(item, recorded)

    def _payload(self, item, recorded) -> dict:
        """The claimed message; its tag remembered when the script recorded it (QoS.append skips the write)."""
        payload = loads(bytes_to_str(item))
        if int(recorded):
            self._claimed.add(payload["properties"]["delivery_tag"])
        return payload


class Channel(ClaimingChannel, kombu_redis.Channel):
    """kombu's Redis channel, claiming."""


class SentinelChannel(ClaimingChannel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, claiming."""


class Transport(kombu_redis.Transport):
    """``redis://`` and ``rediss://``: kombu's Redis transport with claiming channels."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """``sentinel://``: kombu's Sentinel transport with claiming channels."""

    Channel = SentinelChannel
