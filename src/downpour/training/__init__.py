"""Training: LightningModules, KL schedules, callbacks and the trainer factory."""

__all__: list[str] = []
