"""Worker hosts as Linux network namespaces: each has its own address on a private /24, joined to the
host side by a veth pair on one bridge; Redis, the simulator and the webhook bind on the bridge's
address.  ``cut(name)`` takes a host's link down (a partition, not a crash); ``restore(name)`` brings
it back.  ``close()`` deletes every namespace, veth and the bridge (call it in ``finally``).

Needs root and ``ip`` (iproute2).  Names carry a per-run tag so parallel runs do not collide.
"""

from __future__ import annotations

import secrets
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Hosts:
    """``slots`` worker hosts ``h1..hN`` on 10.<a>.<b>.0/24 (host side .1, host i at .(10+i))."""

    def __init__(self, slots: int):
        self.tag = secrets.token_hex(2)
        self.slots = slots
        a, b = 200 + secrets.randbelow(50), secrets.randbelow(250) + 1
        self.net = f"10.{a}.{b}"
        self.host_ip = f"{self.net}.1"
        self.bridge = f"kqbr{self.tag}"
        self.assigned: dict[str, int] = {}       # worker name -> slot
        self.created: list[int] = []

    def ns(self, slot: int) -> str:
        return f"kq{self.tag}h{slot}"

    def _veth(self, slot: int) -> str:
        return f"kq{self.tag}v{slot}"

    def setup(self) -> "Hosts":
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for slot in range(1, self.slots + 1):
            ns, veth = self.ns(slot), self._veth(slot)
            _ip("netns", "add", ns)
            self.created.append(slot)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"{self.net}.{10 + slot}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def wrap(self, worker: str) -> list[str]:
        """The command prefix that runs ``worker`` on a free host."""
        busy = set(self.assigned.values())
        slot = next(s for s in range(1, self.slots + 1) if s not in busy)
        self.assigned[worker] = slot
        return ["ip", "netns", "exec", self.ns(slot)]

    def release(self, worker: str) -> None:
        self.assigned.pop(worker, None)

    def address(self, worker: str) -> str:
        return f"{self.net}.{10 + self.assigned[worker]}"

    def cut(self, worker: str) -> None:
        _ip("link", "set", self._veth(self.assigned[worker]), "down")

    def restore(self, worker: str) -> None:
        _ip("link", "set", self._veth(self.assigned[worker]), "up")

    def close(self) -> None:
        for slot in self.created:
            _ip("link", "del", self._veth(slot), check=False)
            _ip("netns", "del", self.ns(slot), check=False)
        _ip("link", "del", self.bridge, check=False)
        self.created.clear()
