"""Lightning callbacks: TensorBoard dashboards, the prediction CSV writer and exact resume."""
