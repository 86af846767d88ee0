"""The public surface: every package imports, and each __all__ names what really exists."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

PACKAGES = {
    "computewatch": {"__version__"},
    "computewatch.catalog": {"CATALOG", "Metric", "Measurement", "metric", "measurement"},
    "computewatch.samples": {"Sample", "samples_to_frames", "sample_value"},
    "computewatch.validation": {"Rejections", "check_sample", "filter_samples",
                                "validate_frame"},
    "computewatch.store": {"Store", "Query", "Aggregate", "open_store", "DuckDBStore",
                           "VictoriaMetricsStore", "PrometheusStore", "InfluxDBStore",
                           "LineProtocolWriter", "WriteError"},
    "computewatch.sim": {"build_fleet", "simulate", "GroundTruth", "Incident"},
    "computewatch.lineprotocol": {"encode_frame", "encode_samples"},
    "computewatch.collectors": {"Collector"},
    "computewatch.collectors.latency": {"LatencyCollector", "Prober", "Responder",
                                        "serve_responder"},
    "computewatch.collectors.redfish": {"RedfishCollector", "RedfishEndpoint"},
    "computewatch.collectors.snmp": {"SnmpCollector", "SnmpDevice"},
    "computewatch.collectors.modbus": {"ModbusCollector", "ModbusMeter"},
    "computewatch.collectors.rapl": {"RaplCollector"},
    "computewatch.collectors.pue": {"MeterTap", "PueCollector"},
    "computewatch.pue": {"window_pue", "power_ratio", "meter_readings", "windowed_pue",
                         "DEFINITION", "READING_BUCKET"},
    "computewatch.findings": {"Finding", "Severity", "Period", "FINDING_COLUMNS",
                              "findings_frame", "write_findings", "Analysis",
                              "PipelineStatus", "most_severe_first"},
    "computewatch.utilization": {"DEFINITIONS", "IDLE_DEFINITION", "sampling_interval",
                                 "idle_hours", "utilization_totals", "utilization_windows",
                                 "window_totals"},
    "computewatch.compliance": {"COMPLIANCE_DEFINITION", "LINK_LABELS", "SUSTAINED_P95",
                                "link_budgets", "window_compliance"},
    "computewatch.thresholds": {"threshold_series", "ThresholdRule", "pue_target_rules",
                                "site_minimum_rules", "tier_budget_rules"},
    "computewatch.reports": {"build_report", "check_scope", "parse_period", "render_html",
                             "render_csv", "html_to_pdf", "methodology", "COLUMNS"},
    "computewatch.collectors.export": set(),
    "computewatch.collectors.export.buffer": {"DiskQueue", "Batch", "QueueStats",
                                              "DEFAULT_MAX_BYTES"},
    "computewatch.collectors.export.remote": {"RemoteExporter", "parse_write_url",
                                              "WriteTarget"},
    "computewatch.pipelines": {"PIPELINES", "run_pipelines"},
    "computewatch.alerts": set(),
    "computewatch.alerts.push": {"push_findings", "push_analysis", "finding_labels",
                                 "finding_alert", "PushError"},
    "computewatch.alerts.bridge": {"AlertBridge", "open_bridge", "load_bridge_config",
                                   "parse_notification", "render", "verify_signature",
                                   "read_dead_letters"},
    "computewatch.schedule": {"run_every"},
    "computewatch.alerts.policy_rules": {"render_policy_rules", "main"},
    "computewatch.dashboards": {"build_dashboards", "build_files", "push_dashboards",
                                "stale_files", "write_files", "PushError", "GrafanaAuthError",
                                "GrafanaUnreachable"},
    "computewatch.dashboards.query": {"series", "recorded", "Agg", "OverTime", "Bin",
                                      "by_place", "constant_like", "RANGE", "INTERVAL"},
    "computewatch.dashboards.push": {"push_dashboards", "folder_uid", "PushResult"},
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_imports_and_exports_what_it_declares(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert PACKAGES[name] <= exported
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol!r}"


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_collectors_never_import_pipelines_and_back():
    """The flow runs one way: collectors and pipelines speak only through computewatch."""
    root = pathlib.Path(__file__).resolve().parents[1]
    for src, banned in (("collectors", "pipelines"), ("pipelines", "collectors")):
        for path in (root / src).rglob("*.py"):
            assert not any(m == f"computewatch.{banned}" or m.startswith(f"computewatch.{banned}.")
                           for m in _imports(path)), path
    for path in (root / "computewatch").rglob("*.py"):
        if "cli" not in path.parts and path.name != "__main__.py":
            assert "computewatch.cli" not in _imports(path), path
