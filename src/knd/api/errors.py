"""Errors of the claim-config API: every problem names the JSON path of the field at fault."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field. `path` is a JSON path such as `interface.vrf.table` or
    `routes[2].gateway` (empty for the document itself)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """A claim/DeviceClass opaque config is invalid. Carries every FieldError found, so a user
    sees all problems at once; `str()` joins them with '; '."""

    def __init__(self, errors: list[FieldError], context: str = "") -> None:
        self.errors = list(errors)
        self.context = context
        text = "; ".join(str(e) for e in self.errors) or "invalid configuration"
        super().__init__(f"{context}: {text}" if context else text)
