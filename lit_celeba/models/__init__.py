"""The networks (:mod:`.nets`, plain ``nn.Module``), the LightningModule that trains any of them
(:mod:`.module`) and the metrics torchmetrics lacks (:mod:`.metrics`)."""
