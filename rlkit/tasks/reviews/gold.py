"""The gold reward: the true sentiment of a review, as the grammar defines it.

A policy optimised against a learned reward model can find text the model overrates
(Gao et al. 2022). The gold reward is what the reward model approximates, computed exactly:
it parses the full review (prompt + response) with the grammar of ``grammar.py`` and returns
its sentiment in (-0.95, 0.95), or :data:`GOLD_INVALID` (-1, below every valid review) for
text the grammar cannot produce — repetitions, broken structure, a missing final period,
unknown words, text after the period. Degenerate text is never rewarded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rlkit.tasks.reviews.grammar import (
    ADJECTIVES,
    ADVERBS,
    CONNECTIVES,
    DETERMINER,
    END,
    MAX_CLAUSES,
    NEGATION,
    PLURAL_SUBJECTS,
    PLURAL_VERBS,
    PREFIXES,
    SINGULAR_SUBJECTS,
    SINGULAR_VERBS,
    Clause,
    Review,
)

#: The value of any text the grammar cannot produce; strictly below every valid review.
GOLD_INVALID = -1.0

# The same split as the tokenizer's Whitespace pre-tokenizer, so "good." reads as "good ."
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def join_review(prompt: str, response: str) -> str:
    """The full review a (prompt, response) pair stands for: ``prompt + " " + response``."""
    return f"{prompt} {response}" if prompt else response


class _Parser:
    """Recursive descent over a token list; every method returns None on a mismatch."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take_sequence(self, options: Sequence[tuple[str, ...]]) -> tuple[str, ...] | None:
        for option in sorted(options, key=len, reverse=True):  # longest match first
            if tuple(self.tokens[self.pos : self.pos + len(option)]) == option:
                self.pos += len(option)
                return option
        return None

    def clause(self) -> Clause | None:
        if self.peek() != DETERMINER:
            return None
        subject, verb = self.peek(1), self.peek(2)
        if subject in SINGULAR_SUBJECTS:
            verbs = SINGULAR_VERBS
        elif subject in PLURAL_SUBJECTS:
            verbs = PLURAL_VERBS
        else:
            return None
        if verb not in verbs:
            return None
        self.pos += 3
        negated = self.peek() == NEGATION
        if negated:
            self.pos += 1
        adverb = self.peek() if self.peek() in ADVERBS else None
        if adverb is not None:
            self.pos += 1
        adjective = self.peek()
        if adjective not in ADJECTIVES:
            return None
        self.pos += 1
        assert subject is not None and verb is not None
        return Clause(subject, verb, negated, adverb, adjective)

    def review(self) -> Review | None:
        prefix = self.take_sequence(PREFIXES) or ()
        first = self.clause()
        if first is None:
            return None
        clauses = [first]
        connectives: list[tuple[str, ...]] = []
        while self.peek() != END:
            connective = self.take_sequence(tuple(CONNECTIVES))
            clause = self.clause() if connective is not None else None
            if clause is None or len(clauses) == MAX_CLAUSES:
                return None
            connectives.append(connective)  # type: ignore[arg-type]
            clauses.append(clause)
        self.pos += 1  # the final "."
        if self.pos != len(self.tokens):
            return None  # anything after the end
        if len({c.subject for c in clauses}) != len(clauses):
            return None  # a subject said twice is a repetition, not a review
        return Review(prefix, tuple(clauses), tuple(connectives))


def parse_review(text: str) -> Review | None:
    """The review ``text`` spells, or None when the grammar cannot produce it."""
    return _Parser(_TOKEN.findall(text)).review()


def review_gold(text: str) -> float:
    """Gold reward of a full review text."""
    review = parse_review(text)
    return GOLD_INVALID if review is None else review.sentiment()


def gold_reward(prompt: str, response: str) -> float:
    """Gold reward of ``response`` continuing ``prompt`` (the review is the two joined)."""
    return review_gold(join_review(prompt, response))


def gold_rewards(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """Batch form of :func:`gold_reward`."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return [gold_reward(p, r) for p, r in zip(prompts, responses, strict=True)]
