"""The run machinery shared by every training loop (``generate``, ``reconstruct``): run directories,
their lifecycle (``run.json`` status, log file, timings), atomic checkpoints, the training state and
the step loop. Nothing here knows what a step optimises."""
