"""Certificates (TLS-1, TLS-2): how many, days to expiry (every certificate counted in
buckets, the soonest ten by name), renewals failing, ACME orders and request errors."""

from __future__ import annotations

from controller.dashboards.panels import Board, Row, Variable, graph, q, stat_

SEL = '{instance=~"$instance"}'
DAYS = f"(tenantctl_certificate_expiry_timestamp_seconds{SEL} - time()) / 86400"
FAILURES = f"tenantctl_certificate_renewal_failures{SEL}"

CERTIFICATES = Row("Certificates", (
    stat_("Certificates", f"count(tenantctl_certificate_expiry_timestamp_seconds{SEL})"),
    stat_("Days to the soonest expiry", f"min({DAYS})", unit="d"),
    stat_("Expiring within 14 days", f"sum({DAYS} < bool 14)",
          description="Certificates with less than 14 days left (the CertificateExpiringSoon alert)."),
    stat_("Failing renewal", f"sum({FAILURES} > bool 0)",
          description="Certificates whose latest orders failed (CertificateRenewalFailing)."),
    graph("Certificates by days to expiry",
          q(f"sum({DAYS} < bool 7)", "< 7 days"), q(f"sum({DAYS} < bool 14)", "< 14 days"),
          q(f"sum({DAYS} < bool 30)", "< 30 days (renewal due)"),
          q(f"count(tenantctl_certificate_expiry_timestamp_seconds{SEL})", "all")),
    graph("Days to expiry: the 10 soonest certificates", q(f"bottomk(10, {DAYS})", "{{subscription}}"), unit="d"),
    graph("Renewal failures by certificate", q(f"topk(10, {FAILURES})", "{{subscription}}"),
          description="Consecutive failed orders; the last valid certificate keeps serving meanwhile."),
    graph("Days since the last renewal (oldest 10)", q(
        f"topk(10, (time() - tenantctl_certificate_last_renewal_timestamp_seconds{SEL}) / 86400)",
        "{{subscription}}"), unit="d"),
))

ACME = Row("ACME", (
    graph("ACME orders by result (1h)", q(f"sum by (result) (increase(tenantctl_acme_orders_total{SEL}[1h]))",
                                          "{{result}}")),
    graph("ACME requests by result: errors (1h)",
          q(f"sum by (result) (increase(tenantctl_acme_requests_total{SEL}[1h]))", "{{result}}")),
    graph("ACME order duration (mean)", q(
        f"sum by (result) (rate(tenantctl_acme_order_duration_seconds_sum{SEL}[1h])) "
        f"/ sum by (result) (rate(tenantctl_acme_order_duration_seconds_count{SEL}[1h]))", "{{result}}"), unit="s"),
    graph("ACME request duration (mean)", q(
        f"sum by (result) (rate(tenantctl_acme_request_duration_seconds_sum{SEL}[1h])) "
        f"/ sum by (result) (rate(tenantctl_acme_request_duration_seconds_count{SEL}[1h]))", "{{result}}"), unit="s"),
))

BOARD = Board(
    uid="tenantctl-tls", title="tenantctl: certificates",
    description="Certificates by days to expiry, renewal failures and ACME traffic (TLS-1, TLS-2).",
    variable=Variable("instance", "Controller", "tenantctl_build_info"),
    rows=(CERTIFICATES, ACME),
)
