"""One server (or several: the ``server`` variable): CPU, load, memory, disk space and
inodes, disk activity, network, nginx, PHP-FPM, MariaDB, PostgreSQL and PowerDNS, from
the exporters the role starts on every server (``instance`` = the server's name)."""

from __future__ import annotations

from controller.dashboards.panels import SERVER_JOBS, Board, Row, Variable, graph, q, stat_

S = 'instance=~"$server"'
FS = f'{S}, mountpoint!~"/etc/.+"'
"""Filesystems, without the single files Docker binds into a container (/etc/hosts...)."""
DEVICE = f'{S}, device!~"lo|veth.*|docker.*|br-.*"'

SYSTEM = Row("System", (
    stat_("Targets up", f'sum by (job) (up{{job=~"{SERVER_JOBS}", {S}}})'),
    stat_("CPU busy", f'1 - avg(rate(node_cpu_seconds_total{{mode="idle", {S}}}[$__rate_interval]))',
          unit="percentunit"),
    stat_("Memory used", f"1 - sum(node_memory_MemAvailable_bytes{{{S}}}) / sum(node_memory_MemTotal_bytes{{{S}}})",
          unit="percentunit"),
    stat_("Fullest filesystem", f"max(1 - node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}})",
          unit="percentunit"),
    graph("CPU busy by server", q(
        f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle", {S}}}[$__rate_interval]))',
        "{{instance}}"), unit="percentunit"),
    graph("Load (15 min) per CPU", q(
        f'node_load15{{{S}}} / count without (cpu, mode) (node_cpu_seconds_total{{mode="idle", {S}}})',
        "{{instance}}"), q(f"node_load1{{{S}}}", "{{instance}} load1")),
    graph("Memory used", q(f"1 - node_memory_MemAvailable_bytes{{{S}}} / node_memory_MemTotal_bytes{{{S}}}",
                           "{{instance}}"), unit="percentunit"),
    graph("Disk space used", q(f"1 - node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}}",
                               "{{instance}} {{mountpoint}}"), unit="percentunit"),
    graph("Inodes used", q(f"1 - node_filesystem_files_free{{{FS}}} / node_filesystem_files{{{FS}}}",
                           "{{instance}} {{mountpoint}}"), unit="percentunit"),
    graph("Disk IO", q(f"sum by (instance) (rate(node_disk_read_bytes_total{{{S}}}[$__rate_interval]))",
                       "{{instance}} read"),
          q(f"sum by (instance) (rate(node_disk_written_bytes_total{{{S}}}[$__rate_interval]))", "{{instance}} written"),
          unit="Bps"),
    graph("Disk busy time", q(f"max by (instance) (rate(node_disk_io_time_seconds_total{{{S}}}[$__rate_interval]))",
                              "{{instance}}"), unit="percentunit"),
    graph("Network", q(f"sum by (instance) (rate(node_network_receive_bytes_total{{{DEVICE}}}[$__rate_interval]))",
                       "{{instance}} received"),
          q(f"sum by (instance) (rate(node_network_transmit_bytes_total{{{DEVICE}}}[$__rate_interval]))",
            "{{instance}} sent"), unit="Bps"),
))

WEB = Row("Web: nginx and PHP-FPM", (
    graph("nginx requests", q(f"sum by (instance) (rate(nginx_http_requests_total{{{S}}}[$__rate_interval]))",
                              "{{instance}}"), unit="reqps"),
    graph("nginx connections", q(f"nginx_connections_active{{{S}}}", "{{instance}} active"),
          q(f"nginx_connections_waiting{{{S}}}", "{{instance}} waiting")),
    graph("PHP-FPM processes", q(f"phpfpm_active_processes{{{S}}}", "{{instance}} active"),
          q(f"phpfpm_idle_processes{{{S}}}", "{{instance}} idle"),
          q(f"phpfpm_listen_queue{{{S}}}", "{{instance}} listen queue")),
    graph("PHP-FPM processes per pool (top 20 and _other)", q(
        f"sum by (instance, pool) (tenantctl_php_fpm_pool_processes{{{S}}})", "{{instance}} {{pool}}")),
    graph("PHP-FPM accepted connections", q(
        f"sum by (instance) (rate(phpfpm_accepted_connections{{{S}}}[$__rate_interval]))", "{{instance}}"),
          unit="reqps"),
    graph("PHP-FPM saturation", q(f"phpfpm_max_children_reached{{{S}}}", "{{instance}} max children reached"),
          q(f"phpfpm_slow_requests{{{S}}}", "{{instance}} slow requests")),
))

DATABASES = Row("Databases", (
    graph("Database servers up", q(f"mysql_up{{{S}}}", "{{instance}} MariaDB"),
          q(f"pg_up{{{S}}}", "{{instance}} PostgreSQL")),
    graph("Connections used of the maximum", q(
        f"mysql_global_status_threads_connected{{{S}}} / mysql_global_variables_max_connections{{{S}}}",
        "{{instance}} MariaDB"),
          q(f"sum by (instance) (pg_stat_activity_count{{{S}}}) / max by (instance) (pg_settings_max_connections{{{S}}})",
            "{{instance}} PostgreSQL"), unit="percentunit"),
    graph("MariaDB queries", q(f"rate(mysql_global_status_queries{{{S}}}[$__rate_interval])", "{{instance}}"),
          q(f"rate(mysql_global_status_slow_queries{{{S}}}[$__rate_interval])", "{{instance}} slow"), unit="qps"),
    graph("PostgreSQL transactions", q(
        f"sum by (instance) (rate(pg_stat_database_xact_commit{{{S}}}[$__rate_interval]))", "{{instance}}"),
          unit="ops"),
    graph("PostgreSQL database size", q(f"sum by (instance) (pg_database_size_bytes{{{S}}})", "{{instance}}"),
          unit="bytes", width=24),
))

DNS = Row("DNS: PowerDNS", (
    graph("DNS queries", q(f"rate(pdns_auth_udp_queries{{{S}}}[$__rate_interval])", "{{instance}} udp"),
          q(f"rate(pdns_auth_tcp_queries{{{S}}}[$__rate_interval])", "{{instance}} tcp"), unit="reqps"),
    graph("DNS answer latency and failures", q(f"pdns_auth_latency{{{S}}}", "{{instance}} latency (µs)"),
          q(f"rate(pdns_auth_servfail_packets{{{S}}}[$__rate_interval])", "{{instance}} servfail/s")),
))

BOARD = Board(
    uid="tenantctl-server", title="tenantctl: server",
    description="CPU, memory, disks, network, nginx, PHP-FPM, databases and DNS of each server (issue 12).",
    variable=Variable("server", "Server", 'up{job="node"}'),
    rows=(SYSTEM, WEB, DATABASES, DNS),
)
