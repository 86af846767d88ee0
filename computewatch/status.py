"""Exit codes of the `computewatch` command, in one place so tests can assert on them."""

from enum import IntEnum

__all__ = ["ExitStatus"]


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # something failed while running (a store down, a write refused)
    BAD_INPUT = 2  # a configuration file or argument is wrong; the message says where
