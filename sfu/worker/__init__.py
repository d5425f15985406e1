"""Media worker processes (``sfu.workers`` > 1): the signaling process drives N processes, each
running the forwarding unit for the rooms placed on it, through the ``MediaController`` interface
carried over a local channel. Nothing here imports aiortc except the worker's own entry point
(``sfu.worker.process``), which runs in the child process."""
