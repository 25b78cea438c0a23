"""Run the ResourceStore contract suite (`contract.py`) against every adapter."""

from tests.storage.contract import *  # noqa: F403
