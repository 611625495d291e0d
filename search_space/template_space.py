"""`kind: template` spaces: a model config whose leaves may be distributions (template.py), as
the family spaces write what each paper searched."""

from __future__ import annotations

from typing import Any, ClassVar

from hybridnas.common import ConfigError
from hybridnas.models.config import ArchConfig
from hybridnas.search_space.grammar import normalize_entry
from hybridnas.search_space.space import SearchSpace, same_architecture
from hybridnas.search_space.template import match_template, suggest_template


class TemplateSpace(SearchSpace):
    """A `template:` config, its distribution leaves suggested under their paths or names."""

    kind: ClassVar[str] = "template"
    section: ClassVar[str] = "template"

    @classmethod
    def normalized_section(cls, section: Any) -> Any:
        if not isinstance(section, dict) or "stages" not in section:
            raise ConfigError("template: a template space needs a config with stages")
        return normalize_entry(section, "template")

    def suggest_architecture(self, trial: Any, *, num_classes: int, image_size: int) -> dict[str, Any]:
        data = suggest_template(trial, self.document["template"])
        data["input"] = {**data.get("input", {}), "num_classes": num_classes, "image_size": image_size}
        return data

    def params_for(self, target: ArchConfig) -> dict[str, Any] | None:
        params = match_template(self.document["template"], target.model_dump(mode="json"))
        if params is None:
            return None
        from optuna.trial import FixedTrial

        try:
            produced = self.suggest(FixedTrial(params), num_classes=target.input.num_classes,
                                    image_size=target.input.image_size)
        except ConfigError:
            return None
        return params if same_architecture(produced, target) else None
