#!/usr/bin/env bash
# Writes the Kubernetes forms of monitoring/ into k8s/components/servicemonitor: the
# rules as a PrometheusRule and the dashboard as a ConfigMap for Grafana's dashboard
# sidecar. Run it after editing monitoring/; a test fails while they differ.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=monitoring/promql-frontend.rules.yaml
dashboard=monitoring/promql-frontend.dashboard.json
out=k8s/components/servicemonitor

{
  echo "# Generated from $rules by scripts/sync-monitoring.sh: edit that file and rerun."
  echo "# For the Prometheus Operator; your Prometheus resource's ruleSelector may require a"
  echo "# label here (kube-prometheus-stack: \`release: <its release name>\`)."
  echo "apiVersion: monitoring.coreos.com/v1"
  echo "kind: PrometheusRule"
  echo "metadata:"
  echo "  name: promql-frontend"
  echo "  labels:"
  echo "    app.kubernetes.io/name: promql-frontend"
  echo "    app.kubernetes.io/component: query-frontend"
  echo "spec:"
  grep -v '^#' "$rules" | sed 's/^\(.\)/  \1/'
} > "$out/prometheusrule.yaml"

{
  echo "# Generated from $dashboard by scripts/sync-monitoring.sh: edit that file and rerun."
  echo "# Grafana's dashboard sidecar (kube-prometheus-stack, the Grafana chart) loads every"
  echo "# ConfigMap labelled grafana_dashboard: \"1\"."
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: promql-frontend-dashboard"
  echo "  labels:"
  echo "    grafana_dashboard: \"1\""
  echo "    app.kubernetes.io/name: promql-frontend"
  echo "    app.kubernetes.io/component: query-frontend"
  echo "data:"
  echo "  promql-frontend.json: |"
  sed 's/^\(.\)/    \1/' "$dashboard"
} > "$out/dashboard.yaml"
