"""Black-box faults, workloads and checkers. Reaches members only through ``cluster``."""
