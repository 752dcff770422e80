"""Arithmetic problems with one checkable answer, their worked answers, and the one checker.

A problem is a short chain of additions and subtractions of non-negative integers,
``"38 + 45 - 17 ="``. Its worked answer reduces the leftmost two terms at each step and
rewrites the rest, so the whole line stays a true chain of equalities:
``"38 + 45 - 17 = 83 - 17 = 66"`` (prompt, then response ``"83 - 17 = 66"``). Running totals
never go below zero, so a ``-`` is always an operator, never a sign, and the text has one
reading.

The answer of a response is what follows its last ``=`` (the whole response when it has
none), stripped of surrounding whitespace; it is correct when it equals the reference answer
exactly. :func:`is_correct` is the only place that decision is made: the task's gold reward,
the registered reward functions and the build's accuracy figures all call it, so "reward"
and "gold" can never drift apart.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: The two operators; the tokenizer's whole vocabulary is these, the digits and ``=``.
OPERATORS = ("+", "-")
EQUALS = "="

# re.ASCII: \d is 0-9 only, so "٨٣" (Arabic-Indic digits) is no number here.
_NUMBER = re.compile(r"\d+", re.ASCII)
_PROMPT = re.compile(r"\s*(\d+(?:\s*[+-]\s*\d+)+)\s*=\s*", re.ASCII)
_TERM = re.compile(r"([+-]?)\s*(\d+)", re.ASCII)
# A well-formed response: expressions of numbers and operators joined by "=", ending on a
# single number (the canonical worked answer is one; so is a bare answer).
_EXPRESSION = r"\d+(?: [+-] \d+)*"
_WELL_FORMED = re.compile(rf"(?:{_EXPRESSION} = )*\d+", re.ASCII)


@dataclass(frozen=True)
class Problem:
    """``terms[0] ops[0] terms[1] ops[1] terms[2] ...``, evaluated left to right."""

    terms: tuple[int, ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.terms) < 2 or len(self.ops) != len(self.terms) - 1:
            raise ValueError(f"a problem needs ≥ 2 terms and one operator fewer: {self}")
        if any(op not in OPERATORS for op in self.ops) or min(self.terms) < 0:
            raise ValueError(f"terms must be ≥ 0 and operators + or -: {self}")

    def totals(self) -> list[int]:
        """The running total after each operation (the last one is the answer)."""
        total, out = self.terms[0], []
        for op, term in zip(self.ops, self.terms[1:], strict=True):
            total = total + term if op == "+" else total - term
            out.append(total)
        return out

    @property
    def value(self) -> int:
        return self.totals()[-1]

    @property
    def answer(self) -> str:
        """The reference answer, as the exact text a correct response ends on."""
        return str(self.value)

    @property
    def prompt(self) -> str:
        return f"{_expression(self.terms, self.ops)} {EQUALS}"

    def worked(self, totals: Sequence[int] | None = None) -> str:
        """The worked answer (the response): each step's total followed by the terms not yet
        used. ``totals`` replaces the true running totals, to write a worked answer with a
        slip in it."""
        totals = self.totals() if totals is None else list(totals)
        steps = [
            _expression((total, *self.terms[i + 2 :]), self.ops[i + 1 :])
            for i, total in enumerate(totals)
        ]
        return f" {EQUALS} ".join(steps)


def _expression(terms: Sequence[int], ops: Sequence[str]) -> str:
    parts = [str(terms[0])]
    for op, term in zip(ops, terms[1:], strict=True):
        parts += [op, str(term)]
    return " ".join(parts)


def random_problem(rng: random.Random, digits: int, terms: int) -> Problem:
    """A problem of ``terms`` numbers of exactly ``digits`` digits each (0–9 for one digit),
    operators fair coin flips except that a subtraction that would take the total below zero
    becomes an addition (so no text ever needs a minus sign). Equal widths keep the digits
    of one place at one distance from each other, which a tiny model learns far sooner."""
    low = 0 if digits == 1 else 10 ** (digits - 1)
    values = [rng.randint(low, 10**digits - 1) for _ in range(terms)]
    ops: list[str] = []
    total = values[0]
    for value in values[1:]:
        op = rng.choice(OPERATORS)
        if op == "-" and value > total:
            op = "+"
        total = total + value if op == "+" else total - value
        ops.append(op)
    return Problem(tuple(values), tuple(ops))


def problem_stream(seed: int | str, digits: int, terms: int) -> Iterator[Problem]:
    """An endless, seeded stream of problems (repeats possible; callers deduplicate)."""
    rng = random.Random(seed)
    while True:
        yield random_problem(rng, digits, terms)


def distinct_problems(
    n: int,
    seed: int | str,
    digits: int,
    terms: int,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[Problem]:
    """``n`` problems with distinct prompts none of which is in ``exclude``; raises
    ValueError when the option set has too few distinct problems to give that many."""
    out: list[Problem] = []
    seen = set(exclude)
    for tries, problem in enumerate(problem_stream(seed, digits, terms)):
        if len(out) == n:
            return out
        if tries > 100 * n + 1000:
            raise ValueError(
                f"only {len(out)} distinct problems of {terms} terms with {digits} digits "
                f"(wanted {n})"
            )
        if problem.prompt not in seen:
            seen.add(problem.prompt)
            out.append(problem)
    raise AssertionError("unreachable")  # pragma: no cover - the stream is endless


def subseed(seed: int, stage: str) -> int:
    """An independent seed per stage, so changing one stage's size leaves the others' draws
    alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}".encode()).digest()[:4], "little")


def problem_sets(
    seed: int, digits: int, terms: int, n_train: int, n_eval: int
) -> dict[str, list[Problem]]:
    """The prompt splits: ``eval`` problems first, then ``train`` problems none of which is
    an eval problem. A pure function of its arguments, so prompts need no build."""
    held_out = distinct_problems(n_eval, subseed(seed, "eval"), digits, terms)
    train = distinct_problems(
        n_train, subseed(seed, "train"), digits, terms, exclude={p.prompt for p in held_out}
    )
    return {"train": train, "eval": held_out}


def demonstrations(
    n: int,
    seed: int,
    digits: int,
    terms: int,
    exclude: set[str],
    *,
    noise: float = 0.0,
    easy_fraction: float = 0.0,
) -> list[str]:
    """``n`` worked answers (prompt + " " + response) to problems outside ``exclude``, repeats
    allowed. A fraction ``easy_fraction`` has fewer digits (uniform in 1 … digits − 1): the
    one-digit facts they teach are the parts of the many-digit algorithm, and a tiny model
    learns to carry much sooner, and at a less seed-dependent moment, with them. A fraction
    ``noise`` ends on a slipped last digit (:func:`slipped_totals`)."""
    rng = random.Random(subseed(seed, "demonstrations"))
    streams = {
        d: problem_stream(subseed(seed, f"digits{d}"), d, terms) for d in range(1, digits + 1)
    }
    out: list[str] = []
    while len(out) < n:
        easy = digits > 1 and rng.random() < easy_fraction
        problem = next(streams[rng.randint(1, digits - 1) if easy else digits])
        if problem.prompt in exclude:
            continue
        totals = slipped_totals(problem, rng) if rng.random() < noise else None
        out.append(f"{problem.prompt} {problem.worked(totals)}")
    return out


def slipped_totals(problem: Problem, rng: random.Random) -> list[int]:
    """The running totals of ``problem`` with one slip: the last digit of the final answer
    replaced by another digit. Why there: the earlier digits (the carries, the place values)
    stay clean, so noisy demonstrations do not slow the learning of arithmetic itself, and
    the policy learns a careless last digit it can be trained out of."""
    totals = problem.totals()
    last = totals[-1]
    digit = rng.choice([d for d in range(10) if d != last % 10])
    return [*totals[:-1], last - last % 10 + digit]


# ---------------------------------------------------------------------------------------------
# checking: the one place correctness is decided
# ---------------------------------------------------------------------------------------------


def extract_answer(response: str) -> str | None:
    """The answer a response gives: the text after its last ``=`` (all of it when there is no
    ``=``), stripped; ``None`` when that is not a plain run of digits. Strict on purpose: a
    response that trails off into more operations has not answered."""
    tail = response.rsplit(EQUALS, 1)[-1].strip()
    return tail if _NUMBER.fullmatch(tail) else None


def is_correct(response: str, answer: str | int) -> bool:
    """Whether ``response`` answers exactly ``answer`` (``"019"`` is not ``"19"``)."""
    given = extract_answer(response)
    return given is not None and given == str(answer).strip()


def is_well_formed(response: str) -> bool:
    """Whether the response has the worked answer's shape (steps joined by ``=``, single
    spaces, ending on one number), right or wrong: what the optional format reward pays."""
    return _WELL_FORMED.fullmatch(response.strip()) is not None


def parse_prompt(prompt: str) -> Problem | None:
    """The problem a prompt states, or ``None`` when it is not one (negative totals
    included): lets the gold reward check responses to a prompt that arrives without its
    metadata."""
    match = _PROMPT.fullmatch(prompt)
    if match is None:
        return None
    pieces = _TERM.findall(match.group(1))
    terms = tuple(int(number) for _, number in pieces)
    ops = tuple(op for op, _ in pieces[1:])
    problem = Problem(terms, ops)
    return problem if min(problem.totals()) >= 0 else None


def exact_scores(
    responses: Sequence[str], answers: Sequence[str | int | None], format_bonus: float = 0.0
) -> list[float]:
    """1.0 per correct response, 0.0 otherwise (``None`` answer: always 0.0), plus
    ``format_bonus`` for a well-formed one. Every reward of this world is this function."""
    if len(responses) != len(answers):
        raise ValueError(f"{len(responses)} responses but {len(answers)} reference answers")
    scores = []
    for response, answer in zip(responses, answers, strict=True):
        score = float(answer is not None and is_correct(response, answer))
        if format_bonus and is_well_formed(response):
            score += format_bonus
        scores.append(score)
    return scores
