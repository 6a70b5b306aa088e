"""``make findings``: the power-cut and SIGKILL campaigns over every shipped store configuration, as one table."""
