"""The public surface: every public module imports, and its __all__ is exactly the pinned
one and names what really exists."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest
from layering import layer_folders, read_modules

PUBLIC: dict[str, set[str]] = {
    "computewatch": {"__version__"},
    "computewatch.addresses": {"MAX_PORT", "parse_listen", "split_host_port"},
    "computewatch.alerts": set(),
    "computewatch.alerts.bridge": {
        "Alert", "AlertBridge", "BridgeConfig", "KINDS", "Notification", "PayloadError",
        "check_bridge", "load_bridge_config", "open_bridge", "parse_notification",
        "read_dead_letters", "render", "resolve_secrets", "verify_signature"},
    "computewatch.alerts.bridge.config": {
        "AuthConfig", "BasicAuth", "BridgeConfig", "DeliveryConfig", "KIND_DEFAULTS",
        "KindDefaults", "RateLimit", "SecretRef", "ServerConfig", "TargetConfig",
        "load_bridge_config", "resolve_secrets"},
    "computewatch.alerts.bridge.deadletter": {"DeadLetterLog", "read_dead_letters"},
    "computewatch.alerts.bridge.metrics": {"BridgeMetrics"},
    "computewatch.alerts.bridge.payload": {
        "MAX_DEPTH", "Alert", "Notification", "PayloadError", "json_depth",
        "parse_notification"},
    "computewatch.alerts.bridge.queue": {"Job", "TargetWorker", "backoff_delay"},
    "computewatch.alerts.bridge.ratelimit": {"SlidingWindowLimiter"},
    "computewatch.alerts.bridge.server": {"AlertBridge", "check_bridge", "open_bridge"},
    "computewatch.alerts.bridge.targets": {
        "KINDS", "OK", "Outcome", "Prepared", "Request", "Target", "build_target",
        "verify_signature"},
    "computewatch.alerts.bridge.targets.dingtalk": {"DingTalkTarget", "dingtalk_sign"},
    "computewatch.alerts.bridge.targets.feishu": {"FeishuTarget", "feishu_sign"},
    "computewatch.alerts.bridge.targets.slack": {"SlackTarget"},
    "computewatch.alerts.bridge.targets.webhook": {
        "REPLAY_WINDOW_S", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookTarget",
        "verify_signature", "webhook_signature"},
    "computewatch.alerts.bridge.targets.wecom": {"WeComTarget"},
    "computewatch.alerts.bridge.templates": {
        "Message", "STYLES", "Style", "cut_utf8", "group_link", "render", "utf8_len"},
    "computewatch.alerts.policy_rules": {"GROUP_NAME", "main", "render_policy_rules"},
    "computewatch.alerts.push": {
        "PushError", "PushResult", "SOURCE", "alert_name", "finding_alert", "finding_labels",
        "push_analysis", "push_findings"},
    "computewatch.catalog": {
        "ALLOCATION_LABELS", "CATALOG", "CompatPart", "Kind", "Measurement", "Metric", "UNITS",
        "UnitSpec", "UnknownMetricError", "measurement", "measurements", "metric"},
    "computewatch.cli": {"app", "healthcheck", "main"},
    "computewatch.collectors": {
        "Collector", "CollectorError", "DriverAbsent", "NoData", "ParseError", "ResultCode",
        "placement_labels", "readings_or_no_data"},
    "computewatch.collectors.agent": {"Agent", "RunResult", "Scheduled"},
    "computewatch.collectors.ascend": {
        "AscendCollector", "ChipMapping", "ChipRow", "DETAIL_SOURCE", "NpuSmiTimeout",
        "chip_samples", "model_name", "parse_info_table", "parse_key_values", "parse_mapping",
        "run_npu_smi", "DEFAULT_VIEWS", "HCCN_QUERIES", "HCCN_TOOL", "SLOW_VIEWS",
        "STATIC_VIEWS", "ProcessRow", "ViewBlocks", "parse_hccn", "parse_processes",
        "parse_view", "run_command"},
    "computewatch.collectors.config": {"NodeConfig", "load_node_config", "parse_duration"},
    "computewatch.collectors.export": {"ExportOutcome", "ExportResult", "Exporter"},
    "computewatch.collectors.export.buffer": {
        "Batch", "BufferLockedError", "DEFAULT_MAX_BYTES", "DEFAULT_SEGMENT_BYTES", "DiskQueue",
        "FsyncPolicy", "QueueStats"},
    "computewatch.collectors.export.formats": {"SampleFormat", "format_samples"},
    "computewatch.collectors.export.otlp": {
        "DEFAULT_ENDPOINT", "OtlpExporter", "resource_attributes"},
    "computewatch.collectors.export.prometheus": {
        "COMPAT_CHOICES", "HANDSHAKE_TIMEOUT_S", "PrometheusExporter", "SnapshotCollector",
        "exposition"},
    "computewatch.collectors.export.remote": {
        "DEFAULT_BATCH_SAMPLES", "DROP_REASONS", "RemoteExporter", "WriteTarget",
        "check_write_url", "parse_write_url"},
    "computewatch.collectors.export.store": {"StoreExporter"},
    "computewatch.collectors.export.webconfig": {
        "BasicAuth", "TlsServerConfig", "WebConfig", "load_web_config"},
    "computewatch.collectors.kubernetes": {
        "DEFAULT_SOCKET", "REASONS", "Holding", "KubeletUnavailable", "KubernetesConfig",
        "PodAttribution", "PodRef", "PodResourcesClient", "holding_keys", "parse_cgroup",
        "pod_of_pid", "sample_keys"},
    "computewatch.collectors.latency": {
        "BUCKETS", "DEFAULT_RATE", "DEFAULT_RESPONDER_PORT", "DROP_REASONS", "EMITTED",
        "ICMP_DISABLED", "KINDS", "LatencyCollector", "MAGIC", "MIN_FIBER_RTT_S", "PACKET_SIZE",
        "ProbeKind", "ProbePacket", "ProbeTarget", "Prober", "Responder", "WindowResult",
        "decode_probe", "encode_probe", "new_responder_loop", "open_responder", "percentile",
        "read_probe_key", "reply_to", "serve_responder", "split_host_port",
        "targets_from_topology"},
    "computewatch.collectors.modbus": {
        "EMITTED", "MAPS_DIR", "ModbusCollector", "ModbusMeter", "Register", "RegisterMap",
        "Registers", "decode_registers", "load_register_map", "shipped_maps"},
    "computewatch.collectors.nvml": {"EMITTED", "NvmlCollector", "THROTTLE_REASONS"},
    "computewatch.collectors.pue": {"MeterTap", "PueCollector"},
    "computewatch.collectors.rapl": {"EMITTED", "RaplCollector"},
    "computewatch.collectors.redfish": {
        "EMITTED", "ERROR_TYPES", "PART_CONTEXTS", "RedfishCollector", "RedfishEndpoint",
        "environment_readings", "legacy_psu_input_watts", "power_control_watts", "sensor_reading"},
    "computewatch.collectors.setup": {"build_agent", "build_attribution", "build_collectors",
                                      "build_exporters"},
    "computewatch.collectors.snmp": {
        "EMITTED", "ERROR_TYPES", "SnmpCollector", "SnmpDevice", "SnmpProfile", "load_profile",
        "shipped_profiles"},
    "computewatch.compliance": {
        "COMPLIANCE_COLUMNS", "COMPLIANCE_DEFINITION", "LINK_LABELS", "P95", "PAIR_COLUMNS",
        "PairWindows", "link_budgets", "pair_windows", "scored_counts", "window_compliance",
        "window_count", "windows_over_budget"},
    "computewatch.config": {
        "CONFIG_MESSAGES", "ConfigError", "FieldPath", "MAX_CONFIG_BYTES", "MAX_DEPTH",
        "MAX_LISTED", "MAX_VALUES", "PathError", "format_path", "load_yaml_model",
        "load_yaml_model_from_text", "message_in_language", "suggest_known"},
    "computewatch.dashboards": {
        "DASHBOARDS_DIR", "DASHBOARD_SETS", "DashboardError", "DashboardSet", "GrafanaAuthError",
        "GrafanaUnreachable", "MapTiles", "MapTilesError", "PushError", "PushResult",
        "build_dashboards", "build_files", "build_sets", "push_dashboards", "stale_files",
        "write_files"},
    "computewatch.dashboards.basemap": {
        "BASE_LAYER_FILE", "BASE_LAYER_URL", "TILES_ENV", "MapTiles", "MapTilesError",
        "base_layer", "basemap", "render_base_layer"},
    "computewatch.dashboards.build": {
        "ALERTS_RULES_DIR", "DASHBOARDS_DIR", "DashboardError", "build_dashboards", "build_files",
        "build_sets", "stale_files", "write_files"},
    "computewatch.dashboards.energy": {"UID", "energy_dashboard", "period_pue", "pue_target_text"},
    "computewatch.dashboards.latency": {"UID", "latency_dashboard"},
    "computewatch.dashboards.national": {
        "UID", "national_dashboard", "pue_steps", "utilization_steps"},
    "computewatch.dashboards.places": {
        "GAZETTEER_FILE", "PlacesError", "gazetteer", "render_gazetteer"},
    "computewatch.dashboards.push": {
        "GrafanaAuthError", "GrafanaUnreachable", "PushError", "PushResult", "folder_uid",
        "push_dashboards"},
    "computewatch.dashboards.query": {
        "Agg", "Bin", "Expr", "Fn", "INTERVAL", "Macro", "Match", "Matcher", "Num", "OverTime",
        "QueryError", "RANGE", "RANGE_SECONDS", "RATE_INTERVAL", "Selector", "Var", "Window",
        "by_place", "constant_like", "re_any", "recorded", "series"},
    "computewatch.dashboards.regulator": {
        "SAMPLE_INTERVALS", "UID", "completeness", "regulator_dashboard"},
    "computewatch.dashboards.rules": {
        "IDLE_CAPACITY", "IDLE_CAPACITY_ALLOCATED", "IDLE_CAPACITY_FREE", "PLACE", "RULES_FILE",
        "RecordingRule", "alerts_records", "freshest", "known_records", "recording_rules",
        "render_rules"},
    "computewatch.dashboards.sets": {
        "DASHBOARD_SETS", "GRAFANA_DASHBOARDS", "PROVISIONING_FILE", "DashboardSet",
        "render_provisioning"},
    "computewatch.dashboards.site": {"UID", "site_dashboard"},
    "computewatch.durations": {
        "Duration", "Interval", "MAX_DURATION_S", "MIN_DURATION_S", "ShortInterval",
        "format_seconds", "parse_duration"},
    "computewatch.errors": {"NotRolledUp", "StoreError", "StoreURLError"},
    "computewatch.finding_text": {
        "ACUTE_NAMES", "PIPELINE_NAMES", "RULE_TITLES", "SEVERITY_NAMES", "SUBJECT_TYPES",
        "TIER_NAMES",
        "finding_message", "format_value", "rule_title", "word"},
    "computewatch.findings": {
        "Analysis", "CHRONIC_SPAN", "FINDING_COLUMNS", "Finding", "Period", "PipelineStatus",
        "Severity", "finding_key", "findings_frame", "incident_id", "is_acute",
        "most_severe_first", "most_urgent_first", "write_findings"},
    "computewatch.i18n": {
        "DEFAULT_LANGUAGE", "DOMAIN", "ENV_VAR", "LANGUAGES", "LOCALE_DIR", "LanguageError",
        "N_", "_", "current_language", "gettext_dir", "language_of_locale", "ngettext",
        "normalize_language", "resolve_language", "restate", "set_language", "translations",
        "using_language"},
    "computewatch.lineprotocol": {
        "EncodeResult", "GZIP_LEVEL", "InfluxSettings", "LineProtocolError", "LineProtocolWriter",
        "MAX_NAME_BYTES", "MAX_TAGS", "MAX_TAG_VALUE_BYTES", "PRECISIONS", "VMEndpoints",
        "WriteError", "WriteTarget", "Writer", "check_name", "check_write_url", "encode_frame",
        "encode_samples", "escape_field_key", "escape_measurement", "escape_string", "escape_tag",
        "escape_tag_key", "is_retryable_status", "parse_influx_url", "parse_prometheus_url",
        "parse_rollups_url", "parse_vm_url", "parse_write_url"},
    "computewatch.pipelines": {"PIPELINES", "Pipeline", "run_pipelines"},
    "computewatch.pipelines.anomaly": {
        "FEATURES", "FLOORS", "HEALTH_STEP", "LOOKBACK", "MIN_BASELINE_WINDOWS", "MIN_RUN",
        "UNSEEN_HOUR_FLOOR", "Z_CRITICAL", "Z_FLAG", "Z_MOVED", "run"},
    "computewatch.pipelines.latency": {
        "CHRONIC_SHARE", "INTERMITTENT_SHARE", "RULES", "merged_quantile", "run"},
    "computewatch.pipelines.pue": {"run"},
    "computewatch.pipelines.surplus": {"SURPLUS_COLUMNS", "run", "surplus"},
    "computewatch.pipelines.underuse": {"run"},
    "computewatch.place_names": {
        "PLACE_KINDS", "PlaceKind", "place_name", "subject_name", "untranslated_places"},
    "computewatch.policy": {
        "ConfigError", "LEVELS", "LatencyPolicy", "LevelMinimum", "Policy", "PuePolicy", "Sourced",
        "UtilizationDefinition", "UtilizationPolicy", "load_policy", "policy_sha256"},
    "computewatch.pue": {
        "ANNUAL", "CATEGORY_POINT", "CHINA_TZ", "DEFINITION", "POWER_BUCKET", "POWER_MAX_GAP",
        "PUE_COLUMNS", "READING_BUCKET", "READING_MARGIN", "RESET_PLAUSIBLE_FACTOR", "WINDOWS",
        "declared_meters",
        "integrate_power", "meter_readings", "monotonic_energy", "power_ratio", "pue_label",
        "window_edges", "window_pue", "windowed_pue"},
    "computewatch.redact": {
        "MASK", "RedactingFormatter", "is_secret_key", "redact", "redact_url", "register_secret"},
    "computewatch.rollup_rules": {
        "GRAINS", "ROLLED_UP", "ROLLUP_RULES_FILE", "RollupRule", "record_name",
        "render_rollup_rules", "rolled_ops", "rollup_rules"},
    "computewatch.rule_definitions": {
        "ANOMALY_HEALTH", "ANOMALY_SITE", "HELD_IDLE", "LATENCY_BUDGET_BELOW_PHYSICS",
        "LATENCY_LINK_DEGRADED", "LATENCY_ROUTE_INFLATION", "LATENCY_TIER_BUDGET_UNMET",
        "PUE_EXCURSION", "PUE_OVER_TARGET", "PUE_WINDOW_NAMES", "RULE_TEMPLATES", "SURPLUS",
        "UNDERUSE", "definition_in_language"},
    "computewatch.render": {
        "OutputFormat", "format_value", "render_analysis", "render_findings", "render_frame",
        "render_root_causes", "render_scores", "render_summary"},
    "computewatch.reports": {
        "COLUMNS", "ChromiumMissingError", "EmptyPeriodError", "Entry", "HEADLESS_FLAGS",
        "NAMESPACE_COLUMNS", "PERIOD_FORMS", "PdfError", "REPORT_FORMATS", "Report",
        "ReportPeriod", "SHIPPED_POLICY", "build_report", "check_scope", "default_report_path",
        "find_chromium", "html_to_pdf", "methodology", "parse_period", "readable_period",
        "render_csv",
        "render_html", "write_report"},
    "computewatch.samples": {
        "EARLIEST_TIME", "LATEST_TIME", "Sample", "TIME", "sample_value", "samples_to_frames"},
    "computewatch.schedule": {"run_every", "write_heartbeat"},
    "computewatch.sim": {
        "Fleet", "GroundTruth", "History", "Incident", "LinkTruth", "SiteProfile", "build_fleet",
        "simulate", "simulated_meters"},
    "computewatch.sim.fake_npusmi": {"FakeNpuSmi", "FakeNpuSmiError"},
    "computewatch.sim.fake_hccn": {"FakeHccnTool"},
    "computewatch.sim.fake_nvml": {"ARCH", "FakeNvml", "marketing_name"},
    "computewatch.sim.fleet": {
        "DEVICES_PER_NODE", "Fleet", "SiteProfile", "build_fleet", "simulated_meters"},
    "computewatch.sim.hardware": {"AcceleratorSpec", "spec_for"},
    "computewatch.sim.backfill": {"ACCELERATOR_FIELDS", "CARD_STATES", "SKETCH_MASS",
                                  "rollup_frames"},
    "computewatch.sim.history": {"HOST_FACTOR", "History", "Segment", "simulate"},
    "computewatch.sim.incidents": {"AllocationTruth", "GroundTruth", "Incident", "LinkTruth",
                                   "UtilizationTruth"},
    "computewatch.sim.tenants": {"CONTAINER", "HELD_IDLE_SHARE", "JOB_HOURS", "NAMESPACES",
                                 "job_lifetime", "job_pod", "job_start", "site_tenants"},
    "computewatch.sim.node": {
        "Allocation", "DeviceReading", "MIXED", "NodeSim", "mixed_node", "node_from_fleet",
        "simulated_node"},
    "computewatch.sim.scoring": {
        "MATCHERS", "Matcher", "RuleScore", "SCORE_COLUMNS", "Scorecard", "covered_share",
        "overlap", "overlaps", "score"},
    "computewatch.status": {"ExitStatus"},
    "computewatch.store": {
        "Aggregate", "DEFAULT_URL", "DuckDBStore", "InfluxDBStore", "LineProtocolWriter",
        "NotRolledUp", "PrometheusStore", "Query", "Store", "StoreError", "StoreURLError",
        "VictoriaMetricsStore",
        "WriteError", "WriteResult", "open_store", "prefetch", "query_many", "resolution",
        "side_by_side"},
    "computewatch.summary": {"LINK_P95_SOURCES", "NationalSummary", "national_summary"},
    "computewatch.thresholds": {
        "BUSY_LEVEL", "PUE_MIN_COMPLETENESS", "PUE_TARGET", "PlaceRule", "ROUTE_INFLATION_LIMIT",
        "RTT_BUDGET", "ThresholdRule", "UTILIZATION_MINIMUM", "pue_target_rules",
        "site_minimum_rules", "threshold_series", "tier_budget_rules"},
    "computewatch.topology": {
        "AcceleratorInventory", "City", "Cluster", "ConfigError", "DemandCity",
        "EARTH_RADIUS_KM", "Province",
        "FIBER_RTT_S_PER_KM", "Hub", "Link", "LinkOverride", "MAX_ACCELERATORS_PER_MODEL",
        "METER_CATEGORY", "METER_POINTS", "METRO_MAX_KM", "Meter", "Node", "REGIONAL_MAX_KM",
        "Site", "Tier", "Topology", "fiber_min_rtt_s", "great_circle_km", "link_pair",
        "load_topology"},
    "computewatch.triage": {"JSON_COLUMNS", "RootCause", "group_ids", "root_causes",
                            "triage_frame"},
    "computewatch.utilization": {
        "ALLOCATION_DEFINITION", "COMPLETENESS_DEFINITION", "DEFINITIONS", "Definition", "FREE",
        "HELD_IDLE_COLUMNS", "IDLE_DEFINITION", "LEVELS", "SPLIT_COLUMNS", "WINDOW_COLUMNS",
        "allocation_totals", "held_idle_windows", "idle_hours", "idle_split",
        "idle_split_windows", "read_ahead",
        "sampling_interval", "utilization_totals", "utilization_windows",
        "utilization_windows_by_definition", "window_totals"},
    "computewatch.validation": {
        "InvalidSampleError", "Rejections", "check_sample", "filter_samples", "validate_frame"},
}

"""Every public module (no ``_`` in its dotted name) and exactly what its ``__all__`` names.

Equality, as OpenTelemetry's test_import.py: a new public name, a removed one, or a new public
module fails here, so each change of the surface is a deliberate edit of this table."""


def _public_modules() -> list[str]:
    root = pathlib.Path(__file__).resolve().parents[1]
    modules = read_modules(root, "computewatch", layer_folders(root))
    return sorted(name for name in modules
                  if not any(part.startswith("_") for part in name.split(".")[1:]))


def test_every_public_module_is_pinned():
    assert _public_modules() == sorted(PUBLIC)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_surface_is_exactly_the_pinned_one(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} declares no __all__"
    assert set(module.__all__) == PUBLIC[name]
    for symbol in module.__all__:
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
