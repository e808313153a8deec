"""Backups (BKP-1..3) and point-in-time recovery archiving: last success of every source
server in every region, copies missing, failed runs, restore drills, repository checks,
the WAL/binlog archive lag of every database server, and the disaster-recovery drill
on spare servers of other regions (DR-1: RTO, RPO and failures by region)."""

from __future__ import annotations

from controller import metrics
from controller.dashboards.panels import Board, Row, Variable, graph, q, stat_

SEL = '{instance=~"$instance"}'
LAST_SUCCESS, LAST_DURATION = (name for name, _ in metrics.BACKUP_PAIRS)
STALE, REPO_OK, REPO_CHECKED = (name for name, _ in metrics.BACKUP_BY_REGION)
FAILED, ADDED = (name for name, _ in metrics.BACKUP_BY_SERVER)
DRILL_FAILED, DRILL_LAST, DRILL_SECONDS = (name for name, _ in metrics.BACKUP_DRILL)
DR_RTO, DR_RPO, DR_FAILED = (name for name, _ in metrics.DR_BY_REGION)
DR_LAST = metrics.DR_LAST[0]
PITR_LAG = "tenantctl_pitr_archive_lag_seconds"
"""Seconds since the oldest write of a database server not yet archived (``server``,
``engine``, ``region``; 0: all archived): the window a point-in-time restore cannot reach."""
PITR_NEWEST = "tenantctl_pitr_newest_archived_timestamp_seconds"

NIGHTLY = Row("Nightly backups", (
    stat_("Subscriptions whose latest backup failed", f"sum({FAILED}{SEL})"),
    stat_("Copies missing (subscriptions x regions)", f"sum({STALE}{SEL})"),
    stat_("Restore drill failures", f"sum({DRILL_FAILED}{SEL})"),
    stat_("Regions failing restic check", f"sum(1 - {REPO_OK}{SEL})"),
    graph("Hours since the last successful backup, by server and region",
          q(f"(time() - max by (server, region) ({LAST_SUCCESS}{SEL})) / 3600", "{{server}} in {{region}}"), unit="h"),
    graph("Duration of the last backup or copy",
          q(f"max by (server, region) ({LAST_DURATION}{SEL})", "{{server}} in {{region}}"), unit="s"),
    graph("Subscriptions without a fresh copy, by region", q(f"sum by (region) ({STALE}{SEL})", "{{region}}")),
    graph("Bytes added by the last run, by server", q(f"sum by (server) ({ADDED}{SEL})", "{{server}}"),
          unit="bytes"),
))

DRILLS = Row("Restore drills and repositories", (
    graph("Restore drills", q(f"sum({DRILL_FAILED}{SEL})", "subscriptions failing the drill"),
          q(f"(time() - max({DRILL_LAST}{SEL})) / 3600", "hours since the last drill"),
          q(f"max({DRILL_SECONDS}{SEL}) / 60", "minutes the last drill took")),
    graph("Repository check by region", q(f"min by (region) ({REPO_OK}{SEL})", "{{region}} passed (1) / failed (0)"),
          q(f"(time() - max by (region) ({REPO_CHECKED}{SEL})) / 3600", "{{region}}: hours since the check")),
))

PITR = Row("Point-in-time recovery", (
    graph("WAL / binlog archive lag", q(f"max by (server, engine, region) ({PITR_LAG}{SEL})",
                                        "{{server}} {{engine}} ({{region}})"), unit="s",
          description="Seconds of changes not yet archived (0: all archived); WALArchiveLagging fires above 5 minutes."),
    graph("Age of the newest archived write", q(
        f"time() - max by (server, engine, region) ({PITR_NEWEST}{SEL})", "{{server}} {{engine}} ({{region}})"),
          unit="s", description="How far back from now the newest point a restore can reach lies."),
))

DR = Row("Disaster-recovery drill (spare servers)", (
    stat_("DR drill failures", f"sum({DR_FAILED}{SEL})"),
    stat_("Hours since the last DR drill", f"(time() - max({DR_LAST}{SEL})) / 3600"),
    graph("Recovery time (RTO) by region", q(f"max by (region) ({DR_RTO}{SEL})", "{{region}}"), unit="s",
          description="Longest time from the start of the restore to the spare's HTTP answer with the restored "
                      "content, among the latest successful drills of the region's subscriptions (DR-1: 12 h)."),
    graph("Recovery point (RPO) by region", q(f"max by (region) ({DR_RPO}{SEL}) / 3600", "{{region}}"), unit="h",
          description="Longest age of the restored data at the drill's start (nightly snapshot, or newest "
                      "archived log for PITR plans) (DR-1: 1 h)."),
    graph("DR drill failures by region", q(f"sum by (region) ({DR_FAILED}{SEL})", "{{region}}")),
))

BOARD = Board(
    uid="tenantctl-backups", title="tenantctl: backups",
    description="Nightly backups, copies in every region, restore drills, repository checks, PITR archiving and "
                "the disaster-recovery drill on spare servers.",
    variable=Variable("instance", "Controller", "tenantctl_build_info"),
    rows=(NIGHTLY, DRILLS, PITR, DR),
)
