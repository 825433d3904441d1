#!/usr/bin/env python3
"""Every guidon_* metric that the Grafana dashboard's queries and the alert rules name must be one
that guidond exposes. Usage: metrics_names.py METRICS_TEXT DASHBOARD_JSON ALERTS_YAML

METRICS_TEXT is guidond's own exposition (`guidon metrics`), so the names are those of its metric
table (Sources/GuidonMetrics/MetricTable.swift). A histogram also answers to its _bucket, _sum and
_count series."""
import json
import re
import sys

NAME = re.compile(r"\bguidon_[a-z0-9_]+\b")

metrics_text, dashboard_path, alerts_path = sys.argv[1:4]
exposed = set()
for line in open(metrics_text, encoding="utf-8"):
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        exposed.add(name)
        if kind == "histogram":
            exposed.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
if not exposed:
    sys.exit(f"{metrics_text}: no metric families")

failures = []


def expressions(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


dashboard = json.load(open(dashboard_path, encoding="utf-8"))  # fails loudly if it is not JSON
queries = list(expressions(dashboard))
if len([q for q in queries if NAME.search(q)]) < 10:
    failures.append(f"{dashboard_path}: expected at least 10 queries naming guidon metrics, found {len(queries)}")
for query in queries:
    for name in NAME.findall(query):
        if name not in exposed:
            failures.append(f"{dashboard_path}: query names {name}, which guidond does not expose: {query}")

rules = 0
for number, line in enumerate(open(alerts_path, encoding="utf-8"), 1):
    if line.lstrip().startswith("#"):
        continue  # comments may name metrics still to come
    rules += line.lstrip().startswith("- alert:")
    for name in NAME.findall(line):
        if name not in exposed:
            failures.append(f"{alerts_path}:{number}: names {name}, which guidond does not expose")
if rules < 4:
    failures.append(f"{alerts_path}: expected at least 4 alert rules, found {rules}")

for failure in failures:
    print(failure, file=sys.stderr)
if failures:
    sys.exit(1)
print(f"metrics check: {len(queries)} dashboard queries and {rules} alert rules name only the {len(exposed)} series names guidond exposes")
