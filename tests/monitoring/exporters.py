"""The series of the servers' exporters that dashboards and alerts use: name -> (job,
label names), as Debian bookworm's exporters export them through the embedded
environment's scrape configuration (``instance`` = server name, ``region``, ``job``).

Recorded from a real environment's series API (``/api/v1/series``); the live test
(tests/embedded/test_dashboards_live.py) checks that every entry is still exactly what
the running exporters export, so the static query checks of tests/monitoring/ cannot
drift from them."""

from __future__ import annotations

T = frozenset({"instance", "job", "region"})
FS = T | {"device", "fstype", "mountpoint"}
PG = T | {"server"}

SERIES: dict[str, tuple[str, frozenset[str]]] = {
    "up": ("*", T),
    "mysql_global_status_queries": ("mysqld", T),
    "mysql_global_status_slow_queries": ("mysqld", T),
    "mysql_global_status_threads_connected": ("mysqld", T),
    "mysql_global_variables_max_connections": ("mysqld", T),
    "mysql_up": ("mysqld", T),
    "nginx_connections_active": ("nginx", T),
    "nginx_connections_waiting": ("nginx", T),
    "nginx_http_requests_total": ("nginx", T),
    "node_cpu_seconds_total": ("node", T | {"cpu", "mode"}),
    "node_disk_io_time_seconds_total": ("node", T | {"device"}),
    "node_disk_read_bytes_total": ("node", T | {"device"}),
    "node_disk_written_bytes_total": ("node", T | {"device"}),
    "node_filesystem_avail_bytes": ("node", FS),
    "node_filesystem_files": ("node", FS),
    "node_filesystem_files_free": ("node", FS),
    "node_filesystem_size_bytes": ("node", FS),
    "node_load1": ("node", T),
    "node_load15": ("node", T),
    "node_memory_MemAvailable_bytes": ("node", T),
    "node_memory_MemTotal_bytes": ("node", T),
    "node_network_receive_bytes_total": ("node", T | {"device"}),
    "node_network_transmit_bytes_total": ("node", T | {"device"}),
    "pdns_auth_latency": ("pdns", T),
    "pdns_auth_servfail_packets": ("pdns", T),
    "pdns_auth_tcp_queries": ("pdns", T),
    "pdns_auth_udp_answers": ("pdns", T),
    "pdns_auth_udp_queries": ("pdns", T),
    "pdns_auth_uptime": ("pdns", T),
    "pg_database_size_bytes": ("postgres", PG | {"datname"}),
    "pg_settings_max_connections": ("postgres", PG),
    "pg_stat_activity_count": ("postgres", PG | {"datname", "state"}),
    "pg_stat_database_xact_commit": ("postgres", PG | {"datid", "datname"}),
    "pg_up": ("postgres", T),
    "phpfpm_accepted_connections": ("php-fpm", T),
    "phpfpm_active_processes": ("php-fpm", T),
    "phpfpm_idle_processes": ("php-fpm", T),
    "phpfpm_listen_queue": ("php-fpm", T),
    "phpfpm_max_children_reached": ("php-fpm", T),
    "phpfpm_slow_requests": ("php-fpm", T),
    "tenantctl_php_fpm_pool_processes": ("node", T | {"pool"}),
}
"""``up`` is Prometheus' own, for every job (the controller's target has no ``region``)."""

def labels() -> dict[str, set[str]]:
    """Name -> label names, for the query checks."""
    return {name: set(found) for name, (_, found) in SERIES.items()}
