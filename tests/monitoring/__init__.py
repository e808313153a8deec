"""Tests of monitoring/ against the real promtool: rule tests that bite, dashboard and rule
queries that name exported series and return data."""
