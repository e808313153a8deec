"""DNS (DNS-1): zones by server and state as tenantctl sees them (primary, secondary,
secondaries behind or empty), when each server last answered tenantctl, and PowerDNS's
own figures from its /metrics (queries, answers, latency)."""

from __future__ import annotations

from controller.dashboards.panels import Board, Row, Variable, graph, q, stat_

SEL = '{instance=~"$instance"}'
PDNS = '{job="pdns"}'

ZONES = Row("Zones", (
    stat_("Zones (primary copies)", 'sum(tenantctl_dns_zones{state="primary", instance=~"$instance"})'),
    stat_("Secondary copies", 'sum(tenantctl_dns_zones{state="secondary", instance=~"$instance"})'),
    stat_("Secondaries behind or empty", 'sum(tenantctl_dns_zones{state=~"behind|empty", instance=~"$instance"})',
          description="Zones whose secondary copy lags its primary's SOA serial (TenantctlDnsSecondaryBehind)."),
    stat_("DNS servers answering", f"sum(up{PDNS})"),
    graph("Zones by server and state", q(f"sum by (server, state) (tenantctl_dns_zones{SEL})", "{{server}} {{state}}")),
    graph("Secondaries behind their primary", q(
        'sum by (server) (tenantctl_dns_zones{state=~"behind|empty", instance=~"$instance"})', "{{server}}")),
    graph("Seconds since tenantctl last talked to each DNS server", q(
        f"time() - max by (server) (tenantctl_dns_last_sync_timestamp_seconds{SEL})", "{{server}}"), unit="s"),
    graph("Zones not managed by tenantctl", q(
        'sum by (server) (tenantctl_dns_zones{state="foreign", instance=~"$instance"})', "{{server}}")),
))

POWERDNS = Row("PowerDNS", (
    graph("Queries per server", q(f"sum by (instance) (rate(pdns_auth_udp_queries{PDNS}[$__rate_interval]))",
                                  "{{instance}} udp"),
          q(f"sum by (instance) (rate(pdns_auth_tcp_queries{PDNS}[$__rate_interval]))", "{{instance}} tcp"),
          unit="reqps"),
    graph("Answers per server", q(f"sum by (instance) (rate(pdns_auth_udp_answers{PDNS}[$__rate_interval]))",
                                  "{{instance}} udp"),
          q(f"sum by (instance) (rate(pdns_auth_servfail_packets{PDNS}[$__rate_interval]))", "{{instance}} servfail"),
          unit="reqps"),
    graph("Average answer latency", q(f"max by (instance) (pdns_auth_latency{PDNS})", "{{instance}}"), unit="µs"),
    graph("PowerDNS uptime", q(f"max by (instance) (pdns_auth_uptime{PDNS})", "{{instance}}"), unit="s"),
))

BOARD = Board(
    uid="tenantctl-dns", title="tenantctl: DNS",
    description="Zones on every DNS server, secondaries behind their primary, PowerDNS traffic (DNS-1).",
    variable=Variable("instance", "Controller", "tenantctl_build_info"),
    rows=(ZONES, POWERDNS),
)
