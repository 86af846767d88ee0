"""The peers a site probes: `ProbeTarget`, and `targets_from_topology` to pick them.

Each target knows what its results are judged against: its tier, the link's fiber minimum
and the tier's budget (policy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from computewatch.addresses import split_host_port  # the one reading of host:port
from computewatch.policy import Policy
from computewatch.topology import LinkMode, Tier, Topology

__all__ = ["DEFAULT_RESPONDER_PORT", "KINDS", "ProbeKind", "ProbeTarget", "split_host_port",
           "targets_from_topology"]

ProbeKind = Literal["udp", "tcp", "icmp"]
KINDS: tuple[ProbeKind, ...] = ("udp", "tcp", "icmp")

DEFAULT_RESPONDER_PORT = 9410
"""UDP port of the `Responder` where an address gives none (the agent's /metrics is 9400)."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One peer to probe, with what its results are judged against (tier, fiber, budget)."""

    src_site: str
    dst_site: str
    host: str
    port: int
    kind: ProbeKind
    tier: str
    fiber_min_rtt_s: float
    budget_rtt_s: float
    src_hub: str = ""
    dst_hub: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            known = ", ".join(KINDS)
            raise ValueError(f"{self}: unknown probe kind {self.kind!r} (known: {known})")
        try:
            object.__setattr__(self, "tier", Tier(self.tier).value)
        except ValueError:
            known = ", ".join(t.value for t in Tier)
            raise ValueError(f"{self}: unknown tier {self.tier!r} (known: {known})") from None
        if not self.host:
            raise ValueError(f"{self}: empty host")
        if self.kind != "icmp" and not 0 < self.port < 65536:
            raise ValueError(f"{self}: port {self.port!r} outside 1..65535")
        if not self.fiber_min_rtt_s >= 0 or math.isinf(self.fiber_min_rtt_s):
            raise ValueError(f"{self}: fiber_min_rtt_s must be >= 0, got {self.fiber_min_rtt_s!r}")
        if not self.budget_rtt_s > 0 or math.isinf(self.budget_rtt_s):
            raise ValueError(f"{self}: budget_rtt_s must be > 0, got {self.budget_rtt_s!r}")

    def __str__(self) -> str:
        where = self.host if self.kind == "icmp" else f"{self.host}:{self.port}"
        return f"{self.kind} {self.src_site}->{self.dst_site} ({where})"

    @property
    def labels(self) -> dict[str, str]:
        """The catalogue's link labels; empty hubs are left out."""
        out = {"src_site": self.src_site, "dst_site": self.dst_site, "src_hub": self.src_hub,
               "dst_hub": self.dst_hub, "tier": self.tier, "probe": self.kind}
        return {k: v for k, v in out.items() if v}


def targets_from_topology(topology: Topology, policy: Policy, local_site: str,
                          addresses: Mapping[str, str], mode: LinkMode = "full_mesh",
                          kind: ProbeKind = "udp",
                          default_port: int = DEFAULT_RESPONDER_PORT) -> list[ProbeTarget]:
    """The targets ``local_site`` probes: its links in ``mode``, peers at ``addresses``.

    ``addresses`` maps site ids to ``host[:port]``; a UDP peer without a port gets
    ``default_port`` (the Responder's), a TCP peer must name one. A peer without an address,
    or an address for a site the topology does not know, is a ValueError naming them all.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r} (known: {', '.join(KINDS)})")
    topology = policy.tiered(topology)  # tiers by the policy's distances
    local = topology.site(local_site)  # KeyError naming the site when unknown
    known = sorted(s.id for s in topology.sites)
    from computewatch.config import suggest_known

    unknown = [s for s in addresses if s not in known]
    if unknown:
        raise ValueError(f"addresses name unknown site(s) {', '.join(map(repr, unknown))} "
                         f"({suggest_known(unknown[0], known)})")
    targets: list[ProbeTarget] = []
    missing: list[str] = []
    for link in topology.links(mode):
        if local_site not in (link.a, link.b):
            continue
        peer = link.b if link.a == local_site else link.a
        if peer not in addresses:
            missing.append(peer)
            continue
        host, port = split_host_port(addresses[peer],
                                     None if kind == "tcp" else default_port)
        if port is None:
            raise ValueError(f"address {addresses[peer]!r} of site {peer!r}: a tcp probe "
                             "needs host:port")
        targets.append(ProbeTarget(
            local_site, peer, host, port if kind != "icmp" else 0, kind, link.tier.value,
            link.fiber_min_rtt_s, policy.budget_rtt_s(link.tier), local.hub or "",
            topology.site(peer).hub or ""))
    if missing:
        raise ValueError(f"no address for site(s) {', '.join(missing)}, which {local_site} "
                         f"probes in {mode} mode: add them to addresses (site id -> host[:port])")
    return targets
