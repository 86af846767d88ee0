"""Grafana dashboards as code, rendered to committed JSON with provisioning files."""

__all__: list[str] = []
