"""The orchestrator's own configuration file (``microseg.yaml``): change windows, for now.

::

    change_windows:
      - name: prod-weekend
        groups: [prod]                       # Nornir groups whose points it restricts
        windows: ["Sat 02:00-04:00 Europe/Berlin", "Sun 02:00-04:00 Europe/Berlin"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import Diagnostic, Location, PolicyError
from orchestrator.windows import WindowError, WindowRule, parse_window

DEFAULT_CONFIG = Path("microseg.yaml")


class ChangeWindowConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    groups: Annotated[tuple[str, ...], Field(min_length=1)]
    windows: Annotated[tuple[str, ...], Field(min_length=1)]

    @field_validator("windows")
    @classmethod
    def _readable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                parse_window(text)
            except WindowError as exc:
                raise ValueError(str(exc)) from exc
        return value

    def rule(self) -> WindowRule:
        return WindowRule(self.name, frozenset(self.groups), tuple(parse_window(t) for t in self.windows))


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    change_windows: tuple[ChangeWindowConfig, ...] = ()

    def window_rules(self) -> list[WindowRule]:
        return [w.rule() for w in self.change_windows]


def load_config(path: Path | None) -> Config:
    """``path`` (or ./microseg.yaml when it exists); an empty configuration otherwise."""
    target = path or DEFAULT_CONFIG
    if path is None and not target.exists():
        return Config()
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        return Config.model_validate(data)
    except OSError as exc:
        raise PolicyError(f"cannot read the configuration {target}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{target}: not YAML: {exc}", [Diagnostic(str(exc), Location(str(target)))]) from exc
    except ValidationError as exc:
        problems = [Diagnostic(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", Location(str(target)))
                    for e in exc.errors()]
        raise PolicyError(f"{target}: invalid configuration", problems) from exc
