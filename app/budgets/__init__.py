"""Budgets: a tenant's spending limit per calendar period, its alerts and its check.

- `periods`: which day, ISO week or month of the budget's zone a moment
  belongs to (the series' calendar, app/buckets.py: DST-exact).
- `spending`: what a number means: spent, remaining, percent, projection,
  thresholds reached (`status`), and the enforcement check.
- `service`: creating, changing, listing and deleting budgets (the CLI and
  the routes share it; every change is audited).
- `alerts`: the thresholds a stored batch crosses, each fired exactly once.

A budget counts the cost of its tenant's ok calls whose own timestamp lies
in the period (and, where set, of one model and one operation): a late or
backfilled batch counts in the period it belongs to, and the number is the
one `/v1/usage` gives for that window.
"""
