"""GPU workloads and the Modal app that deploys them."""
