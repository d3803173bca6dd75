"""DMControl MT30 environments: the 19 stock tasks and the 11 custom ones, behind one wrapper."""
from .dmcontrol import DMControlEnv, make_env

__all__ = ["DMControlEnv", "make_env"]
