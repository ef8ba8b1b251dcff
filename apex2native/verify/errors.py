"""The one error type that means "harness or usage problem" (exit status 2)."""


class HarnessError(Exception):
    """A usage error or a failure that is not the rewrite's fault (exit 2)."""
