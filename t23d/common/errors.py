"""The error type t23d raises for bad input. The CLI prints its message and exits with code 2."""


class T23dError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""


class ConfigError(T23dError, ValueError):
    """An unknown or invalid configuration key or value."""
