"""Search spaces as data: YAML files that a define-by-run function turns into valid configs.

Two kinds of space file, one class each:
- `kind: union` -- ranges for the union program over every knob (`UnionSpace`, union_space.py;
  the program is union.py);
- `kind: template` -- a config whose leaves may be distributions (`TemplateSpace`,
  template_space.py; template.py walks it), used by the family spaces that mirror what each
  paper searched.
Both share the `SearchSpace` interface (space.py) and may have a `training:` section
(training_section.py). Ranges and choices are written the same way in every section
(grammar.py); a loaded space holds its document in that grammar, the old spelling rewritten,
which is what a study stores and `format_space` prints (files.py).
Built-in spaces live in search_space/spaces/; copy one, edit it, pass the file's path.
"""

from hybridnas.search_space.files import (
    BUILTIN_SPACES,
    SPACE_KINDS,
    SPACES_DIR,
    format_space,
    load_space,
    space_from_document,
)
from hybridnas.search_space.space import SearchSpace, same_architecture, sample_configs
from hybridnas.search_space.template import match_template, suggest_template
from hybridnas.search_space.template_space import TemplateSpace
from hybridnas.search_space.union import FloatRange, IntRange, UnionKnobs, suggest_union
from hybridnas.search_space.union_space import UnionSpace, knob_values

__all__ = [
    "BUILTIN_SPACES",
    "SPACES_DIR",
    "SPACE_KINDS",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "TemplateSpace",
    "UnionKnobs",
    "UnionSpace",
    "format_space",
    "knob_values",
    "load_space",
    "match_template",
    "same_architecture",
    "sample_configs",
    "space_from_document",
    "suggest_template",
    "suggest_union",
]
