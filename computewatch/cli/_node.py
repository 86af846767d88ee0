"""The node's commands: `collect` (one snapshot), `agent` (collect and export on schedule) and
`responder` (answer other sites' latency probes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import (
    CompatOpt,
    ConfigOpt,
    SimulateOpt,
    UserError,
    err_console,
    parse_duration,
)
from computewatch.cli._signals import run_until_signalled
from computewatch.i18n import _

__all__ = ["agent", "bare_simulate", "collect", "responder"]

SeedOpt = Annotated[int, typer.Option(min=0, help="Seed of the simulated fleet.")]


def _simulated(simulate: str | None, seed: int):
    if simulate is None:
        return None
    from computewatch.sim.node import simulated_node

    try:
        return simulated_node(simulate, seed=seed)
    except KeyError as exc:
        raise UserError(f"--simulate={simulate}: {exc.args[0]}") from None


def _compat(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from computewatch.collectors.export.prometheus import COMPAT_CHOICES

    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in COMPAT_CHOICES]
    if bad:
        raise UserError(_("bad --compat {value}: choose from {choices}").format(
            value=repr(bad[0]), choices=", ".join(COMPAT_CHOICES)))
    return names


def bare_simulate(argv: list[str]) -> list[str]:
    """``--simulate`` with no value means the mixed node (click has no optional values).
    Every command passes here: the simulator is imported only when ``--simulate`` is."""
    out = list(argv)
    if "--simulate" not in out:
        return out
    from computewatch.sim.node import MIXED

    for i, arg in enumerate(out):
        if arg == "--simulate" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = f"--simulate={MIXED}"
    return out


def collect(
    once: Annotated[bool, typer.Option("--once", help="One snapshot, then exit (the only "
                                       "mode; kept for symmetry with the agent).")] = True,
    output: Annotated[str, typer.Option("--format",
                                        help="prometheus | influx | json | table")] = "table",
    config: ConfigOpt = None,
    simulate: SimulateOpt = None,
    compat: CompatOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Print one snapshot of every enabled collector and exit."""
    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.export.formats import SampleFormat, format_samples
    from computewatch.collectors.setup import build_agent

    try:
        fmt = SampleFormat(output)
    except ValueError:
        raise UserError(_("bad --format {value}: one of {choices}").format(
            value=repr(output), choices="prometheus, influx, json, table")) from None
    cfg = load_node_config(config)
    runner = build_agent(cfg, simulate=_simulated(simulate, seed), exporters=[])
    try:
        samples = runner.run_once()
    finally:
        runner.close()
    sys.stdout.write(format_samples(samples, fmt, _compat(compat) or cfg.exports.prometheus.compat))


def agent(
    config: ConfigOpt = None,
    listen: Annotated[str | None, typer.Option(
        help="Serve /metrics here (host:port; default from the config, 127.0.0.1:9400).")]
    = None,
    compat: CompatOpt = None,
    web_config_file: Annotated[Path | None, typer.Option(
        help="TLS and basic auth for /metrics: a Prometheus exporter-toolkit web "
             "configuration file (default from the config: exports.prometheus."
             "web_config_file).")] = None,
    simulate: SimulateOpt = None,
    seed: SeedOpt = 0,
    duration: Annotated[str | None, typer.Option(
        help="Stop after this long (e.g. 10m); default: run until interrupted.")] = None,
    node_name: Annotated[str | None, typer.Option(
        "--node", envvar="COMPUTEWATCH_NODE",
        help="This node's name, over the config's `node` (in Kubernetes: the pod's "
             "spec.nodeName, whereas the host name is the pod's).")] = None,
    kubernetes: Annotated[bool | None, typer.Option(
        "--kubernetes/--no-kubernetes", envvar="COMPUTEWATCH_KUBERNETES",
        help="Label accelerators with the pod that holds them (kubelet PodResources), over "
             "the config's `kubernetes.enabled`; like dcgm-exporter's "
             "DCGM_EXPORTER_KUBERNETES.")] = None,
) -> None:
    """Run the node agent: collect on schedule and export (Prometheus, OTLP, store)."""
    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.setup import build_agent, build_exporters

    cfg = load_node_config(config)
    if node_name is not None:
        if not node_name.strip():
            raise UserError(_("--node: empty node name"))
        cfg = cfg.model_copy(update={"node": node_name.strip()})
    if kubernetes is not None:
        cfg = cfg.model_copy(update={"kubernetes": cfg.kubernetes.model_copy(
            update={"enabled": kubernetes})})
    node = _simulated(simulate, seed)
    labels = node.labels if node else cfg.labels
    duration_s = parse_duration(duration, "--duration").total_seconds() if duration else None
    try:
        exporters = build_exporters(cfg, labels=labels, listen=listen, compat=_compat(compat),
                                    web_config=web_config_file)
    except (ValueError, OSError) as exc:
        raise UserError(_("cannot start exporters: {reason}").format(reason=exc)) from None
    runner = build_agent(cfg, simulate=node, exporters=exporters)
    where = ", ".join(e.name + (f" on {getattr(e, 'scheme', 'http')} :{e.port}"
                                if hasattr(e, "port") else "")
                      for e in exporters) or "no exporter"
    err_console().print(f"computewatch agent on {labels['node']}: "
                        f"{', '.join(runner.collector_names)} -> {where}",
                        markup=False, highlight=False)
    try:
        run_until_signalled(runner.run, duration_s=duration_s)
    finally:
        runner.close()


def responder(
    listen: Annotated[str, typer.Option(help="host:port to answer UDP probes on.")]
    = "0.0.0.0:9410",
    key_file: Annotated[Path | None, typer.Option(
        help="Answer only probes signed with the shared key in this file (and sign the "
             "replies); the agents' collectors.latency.key_file.")] = None,
    key_env: Annotated[str | None, typer.Option(
        help="As --key-file, the key read from this environment variable.")] = None,
    rate: Annotated[float | None, typer.Option(
        help="Probes answered per second per source address, and as many in a burst "
             "(default: the responder's DEFAULT_RATE, 200); 0: no limit.")] = None,
    delay: Annotated[str | None, typer.Option(
        help="Hold each reply this long (testing only, e.g. 3ms).")] = None,
    drop: Annotated[float, typer.Option(help="Share of probes to drop (testing only).")] = 0.0,
) -> None:
    """Answer other sites' UDP latency probes (run one per site)."""
    from computewatch.addresses import parse_listen
    from computewatch.collectors.latency import DEFAULT_RATE, read_probe_key, serve_responder

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not 0.0 <= drop < 1.0:
        raise UserError(_("--drop {value}: must be in [0, 1)").format(value=drop))
    rate = DEFAULT_RATE if rate is None else rate
    if not 0.0 <= rate < float("inf"):
        raise UserError(_("--rate {value}: must be a number of probes a second >= 0").format(
            value=rate))
    delay_s = parse_duration(delay, "--delay").total_seconds() if delay else 0.0
    try:
        key = read_probe_key(key_file, key_env)
    except ValueError as exc:
        raise UserError(f"responder: {exc}") from None

    def serve(stop) -> None:
        serve_responder(host, port, delay_s, drop, stop, key=key,
                        rate=rate or None,
                        ready=lambda addr: err_console().print(
                            f"computewatch responder on udp {addr[0]}:{addr[1]} "
                            f"({'signed' if key else 'unsigned'} probes)",
                            markup=False, highlight=False))

    try:
        run_until_signalled(serve)
    except OSError as exc:
        raise UserError(_("cannot listen on udp {address}: {reason}").format(
            address=listen, reason=exc)) from None
