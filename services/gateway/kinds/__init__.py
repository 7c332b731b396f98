"""``/v1/kinds``: the workloads this deployment runs, for app builders and the dashboard's new-job form."""
