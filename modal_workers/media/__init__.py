"""Video shared by the workloads: reading frames (with their timestamps), writing results and browser previews."""
