"""Run the ResourceStore contract suite (`contract_*.py`, mapped in `contract.py`) against every
adapter."""

from tests.storage.contract_events import *  # noqa: F403
from tests.storage.contract_paging import *  # noqa: F403
from tests.storage.contract_recover_locks import *  # noqa: F403
from tests.storage.contract_references import *  # noqa: F403
from tests.storage.contract_search import *  # noqa: F403
from tests.storage.contract_versions import *  # noqa: F403
