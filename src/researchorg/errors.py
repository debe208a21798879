"""The one exception hierarchy. The CLI prints any of these as one line."""


class ResearchOrgError(Exception):
    """Base of every error researchorg raises on purpose."""


class ConfigError(ResearchOrgError):
    """A task.toml or org.toml that cannot be used; the message names the file and the key."""


class LabError(ResearchOrgError):
    """The program repository, a worktree or git is not in the state the lab needs."""


class AgentError(ResearchOrgError):
    """An agent backend cannot start or cannot produce a proposal."""
