"""Built-in reward functions, registered through the reward hook like any plugin's."""

from __future__ import annotations

from rlkit.hookspecs import hookimpl


def word_count(word: str):
    """Reward = how many times ``word`` appears in the response (a test-friendly signal)."""

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        return [float(r.split().count(word)) for r in responses]

    return reward


def response_length(prompts: list[str], responses: list[str]) -> list[float]:
    """Reward = number of words in the response."""
    return [float(len(r.split())) for r in responses]


@hookimpl
def rlkit_register_rewards(register):
    register("count_good", word_count("good"))
    register("response_length", response_length)
