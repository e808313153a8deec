"""The cluster overview: regions and servers, subscriptions by state and sync, conflicts,
overuse, reconciliation (rate, errors, latency), the work queue and the controller's own
health. Filtered by the controller ``instance``; server counts come from the exporters."""

from __future__ import annotations

from controller.dashboards.panels import SERVER_JOBS, Board, Row, Variable, graph, q, stat_

SEL = '{instance=~"$instance"}'  # every controller query carries it


def sel(**matchers: str) -> str:
    """``{k="v", ..., instance=~"$instance"}``."""
    inner = "".join(f'{k}="{v}", ' for k, v in matchers.items())
    return "{" + inner + 'instance=~"$instance"}'


CLUSTER = Row("Regions and servers", (
    stat_("Regions", 'count(count by (region) (up{job="node"}))',
          description="Regions with at least one server scraped by Prometheus."),
    stat_("Servers up", 'sum(up{job="node"})', description="Servers whose node exporter answers."),
    stat_("Servers unreachable by tenantctl", f"sum(1 - tenantctl_server_reachable{SEL})"),
    stat_("Exporters down", f'sum(1 - up{{job=~"{SERVER_JOBS}"}})',
          description="Exporter targets (or, for php-fpm and pdns, the services) that do not answer."),
    graph("Servers up by region", q('sum by (region) (up{job="node"})', "{{region}}")),
    graph("Exporter targets up by job", q(f'sum by (job) (up{{job=~"{SERVER_JOBS}"}})', "{{job}}")),
    graph("Servers reachable by tenantctl", q(f"min by (server) (tenantctl_server_reachable{SEL})", "{{server}}")),
    graph("Servers replaced or wiped (identity marker changes, 1h)",
          q(f"sum by (server) (increase(tenantctl_server_generation_changes_total{SEL}[1h]))", "{{server}}")),
))

SUBSCRIPTIONS = Row("Subscriptions", (
    stat_("Subscriptions", f"sum(tenantctl_subscriptions{SEL})"),
    stat_("Unsynced (SYNC-3)", f"sum(tenantctl_subscriptions{sel(sync='unsynced')})"),
    stat_("Failed concerns", f"sum(tenantctl_concern_status{sel(status='failed')})"),
    stat_("Suspended", f"sum(tenantctl_subscriptions_by_state{sel(state='suspended')})"),
    graph("Subscriptions by sync state", q(f"sum by (sync) (tenantctl_subscriptions{SEL})", "{{sync}}")),
    graph("Subscriptions by lifecycle state",
          q(f"sum by (state, reason) (tenantctl_subscriptions_by_state{SEL})", "{{state}} {{reason}}")),
    graph("Conflicts (SYNC-3)",
          q(f"sum(tenantctl_subscriptions{sel(sync='unsynced')})", "subscriptions with conflicts"),
          q(f"sum by (property) (tenantctl_conflicts{SEL})", "{{property}}")),
    graph("Concerns by status", q(f"sum by (concern, status) (tenantctl_concern_status{SEL})", "{{concern}} {{status}}")),
    graph("Overuse by resource (RES-2)",
          q(f"sum(tenantctl_subscriptions_by_state{sel(state='suspended', reason='overuse')})",
            "suspended for overuse"),
          q(f"sum by (resource, level) (tenantctl_overuse{SEL})", "{{resource}} {{level}}")),
    graph("Versions in use (PLAT-5)",
          q(f"sum by (software, version, outdated) (tenantctl_subscription_versions{SEL})",
            "{{software}} {{version}} (outdated: {{outdated}})")),
    graph("Moves by step (issue 13)", q(f"sum by (step) (tenantctl_subscription_moves{SEL})", "{{step}}"),
          description="Moves of subscriptions to another server, by the step they are at (scheduled: waiting "
                      "for a maintenance window)."),
    graph("Longest time a move has been at a step",
          q(f"max by (step) (tenantctl_subscription_move_step_seconds{SEL})", "{{step}}"), unit="s",
          description="MoveStuck fires past an hour at a step other than scheduled, switched or removed."),
))

RECONCILE = Row("Reconciliation", (
    stat_("Queue depth", f"sum(tenantctl_workqueue_depth{SEL})"),
    stat_("Error ratio (10m)", f"max(tenantctl:reconcile_errors:ratio_rate10m{SEL})", unit="percentunit"),
    stat_("Deferred (backing off)", f"sum(tenantctl_deferred{SEL})"),
    stat_("Held by a permanent failure", f"sum(tenantctl_backoff_permanent{SEL})"),
    graph("Reconciliations by result", q(f"sum by (result) (rate(tenantctl_reconcile_total{SEL}[$__rate_interval]))",
                                          "{{result}}"), unit="ops"),
    graph("Reconcile errors", q(f"sum(rate(tenantctl_reconcile_errors_total{SEL}[$__rate_interval]))", "errors/s"),
          q(f"max(tenantctl:reconcile_errors:ratio_rate10m{SEL})", "error ratio (10m)"), unit="short"),
    graph("Reconcile pass duration",
          q(f"histogram_quantile(0.5, sum by (le) (rate(tenantctl_reconcile_time_seconds_bucket{SEL}[5m])))", "p50"),
          q(f"histogram_quantile(0.99, sum by (le) (rate(tenantctl_reconcile_time_seconds_bucket{SEL}[5m])))", "p99"),
          q(f"sum(rate(tenantctl_reconcile_time_seconds_sum{SEL}[5m])) "
            f"/ sum(rate(tenantctl_reconcile_time_seconds_count{SEL}[5m]))", "mean"), unit="s"),
    graph("Work queue", q(f"sum(tenantctl_workqueue_depth{SEL})", "depth"),
          q(f"sum(rate(tenantctl_workqueue_adds_total{SEL}[$__rate_interval]))", "adds/s"),
          q(f"sum(rate(tenantctl_workqueue_retries_total{SEL}[$__rate_interval]))", "retries/s")),
    graph("Time keys wait in the queue (p99)", q(
        f"histogram_quantile(0.99, sum by (le) (rate(tenantctl_workqueue_queue_duration_seconds_bucket{SEL}[5m])))",
        "p99"), unit="s"),
    graph("Backoff", q(f"sum(tenantctl_deferred{SEL})", "deferred (temporary failure)"),
          q(f"sum(tenantctl_backoff_permanent{SEL})", "held (permanent failure)")),
))

CONTROLLER = Row("The controller", (
    stat_("Desired state valid", f"min(tenantctl_desired_state_valid{SEL})"),
    stat_("Age of the last good desired state", f"time() - min(tenantctl_desired_state_last_success_timestamp_seconds{SEL})",
          unit="s"),
    stat_("Deletions held", f"sum(tenantctl_deletions_held{SEL})"),
    stat_("Controllers up", 'sum(up{job="tenantctl"})'),
    graph("Desired state and deletion guard", q(f"min(tenantctl_desired_state_valid{SEL})", "desired state valid"),
          q(f"sum(tenantctl_deletions_held{SEL})", "deletions held")),
    graph("Passes found interrupted", q(f'sum(increase(tenantctl_reconcile_total{sel(result="interrupted")}[1h]))',
                                        "interrupted passes (1h)")),
    graph("Operator leader election", q(f"max by (instance) (tenantctl_leader{SEL})", "{{instance}}"), width=24,
          description="1 on the operator replica that holds the leader Lease and reconciles, 0 on those standing by "
                      "(and under `tenantctl run`, which elects no leader)."),
))

BOARD = Board(
    uid="tenantctl-overview", title="tenantctl: cluster overview",
    description="Regions, servers, subscriptions, reconciliation and the controller's health (issue 12).",
    variable=Variable("instance", "Controller", "tenantctl_build_info"),
    rows=(CLUSTER, SUBSCRIPTIONS, RECONCILE, CONTROLLER),
)
