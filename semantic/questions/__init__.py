"""Questions in plain English, answered with the governed metrics (see `answer.Asker`)."""

from semantic.questions.answer import Asker
from semantic.questions.parse import MAX_QUESTION_CHARS, QuestionError

__all__ = ["MAX_QUESTION_CHARS", "Asker", "QuestionError"]
