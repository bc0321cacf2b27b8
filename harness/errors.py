"""Errors the user can fix. The CLI prints them as one line and exits with status 2."""


class HarnessError(Exception):
    """A problem with the user's input (config, image, weights), never a bug."""

    exit_status = 2


class ConfigError(HarnessError):
    """An invalid config: the message names the file, the key path and the problem."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class UnavailableError(HarnessError):
    """A hasher cannot run here (e.g. model weights missing); --skip-unavailable runs the rest."""


class ImageError(HarnessError):
    """An image cannot be read or used."""


class HashError(HarnessError):
    """A hasher cannot hash this image (wrong dtype or shape, or the backend failed on it)."""
