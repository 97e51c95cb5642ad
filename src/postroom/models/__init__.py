"""Every table, one module per concept; importing this package registers them all on ``metadata``."""

from postroom.models.api_key import api_keys
from postroom.models.auth_failure import auth_blocks, auth_failures
from postroom.models.team import projects, teams
from postroom.models.types import metadata

__all__ = ["api_keys", "auth_blocks", "auth_failures", "metadata", "projects", "teams"]
