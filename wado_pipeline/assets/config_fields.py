"""Run-config fields as the UI's Launchpad shows them."""

from pydantic import Field


def optional(description: str):
    """A field the user may leave out (None), with the line the Launchpad shows.
    Dagster's config needs ``Optional[...]`` annotations on such fields, not ``X | None``."""
    return Field(default=None, description=description)
