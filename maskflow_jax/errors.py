"""The error types the library raises for bad input, each with a message that names the fix.

`ConfigError`: a config value is invalid (raised by config_validation and the code that reads the
config). `DataError`: a data file or folder is missing, unreadable or has the wrong format.
"""


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and how to fix it."""


class DataError(ValueError):
    """A data file or folder is missing, unreadable or has the wrong format (the message names it)."""
