"""A settings model for a driver whose own parser checks its settings: the parser's keys, its rules, at load time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationInfo, create_model, model_validator

from orchestrator.model import DriverError, DriverSettings


def parser_checked(name: str, keys: Iterable[str],
                   parse: Callable[[Mapping[str, Any]], object]) -> type[DriverSettings]:
    """A :class:`DriverSettings` model whose fields are ``keys`` and whose values ``parse`` checks.

    An unknown (misspelt) key is refused by the model with its own location; a wrong value is refused with
    the parser's message, which names the setting — the same rules the driver applies when it is built, so
    there is one definition of each setting, and it runs when the inventory loads.
    """
    def check(model: DriverSettings, info: ValidationInfo) -> DriverSettings:
        given = {key: getattr(model, key) for key in model.model_fields_set}
        try:
            parse(given)
        except DriverError as exc:
            message = exc.message.split("settings: ", 1)[-1]
            raise ValueError(message) from None
        return model

    fields: dict[str, Any] = {key: (Any, None) for key in keys if key not in DriverSettings.model_fields}
    return create_model(name, __base__=DriverSettings, __module__=__name__,
                        __validators__={"_parsed": model_validator(mode="after")(check)}, **fields)
