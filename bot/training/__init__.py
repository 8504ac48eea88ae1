"""Training: the dataset, the loss, the reward model, the trainer, the gate, one night's run, and the
process that runs it."""
