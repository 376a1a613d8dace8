"""Run the `modalfuse` CLI as a user would: a child process configured by its environment."""

from __future__ import annotations

import os
import sys

from modalfuse.settings import Settings

CLI = [sys.executable, "-c", "from modalfuse.cli import main; main()"]


def env_for(settings: Settings) -> dict[str, str]:
    """This environment plus every value of `settings` as its MODALFUSE_* variable."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        key = f"MODALFUSE_{name.upper()}"
        if isinstance(value, list):
            env[key] = ",".join(str(v) for v in value)
        elif hasattr(value, "get_secret_value"):
            env[key] = value.get_secret_value()
        else:
            env[key] = str(value)
    return env
