"""Every installed built-in algorithm passes the conformance kit any plugin can run."""

from __future__ import annotations

import pytest

from rlkit.plugins import make_plugin_manager
from rlkit.testing import CHECKS

BUILTIN = ["reinforce", "a2c", "ppo_clip", "ppo_kl", "ppo_max", "dpo", "grpo", "rloo",
           "reinforce_pp", "kto", "simpo", "orpo"]
INSTALLED = [n for n in BUILTIN if n in make_plugin_manager().registry.algorithms]


def test_the_reinforce_plugin_is_installed():
    assert "reinforce" in INSTALLED


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
@pytest.mark.parametrize("algorithm", INSTALLED)
def test_builtin_algorithm_conforms(algorithm, check):
    check(algorithm)


def test_the_kit_catches_a_broken_plugin():
    from dataclasses import dataclass

    import rlkit
    from rlkit.algorithm import Algorithm, AlgorithmConfig
    from rlkit.plugins import get_plugin_manager
    from rlkit.testing import check_config_documented, check_gradients_reach_the_models

    @dataclass
    class Undocumented(AlgorithmConfig):
        secret: float = 1.0

    class Detached(Algorithm):
        name = "detached"
        Config = Undocumented

        def loss(self, batch, out):
            return (out.logprobs.detach().sum() * 0 + batch.scores.sum()).requires_grad_(), {}

    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_algorithms(self, register):
            register(Detached)

    get_plugin_manager().register(Plugin(), name="broken")
    with pytest.raises(AssertionError, match="secret is undocumented"):
        check_config_documented("detached")
    with pytest.raises(AssertionError, match="no gradient reaches the policy"):
        check_gradients_reach_the_models("detached")


def test_the_kit_catches_a_minibatch_statistic_taken_per_micro_batch():
    """A plugin that whitens its advantages inside ``loss`` (over each micro-batch, not over
    the minibatch) fails the accumulation check, with what to do; taking the same statistic in
    ``prepare_minibatch`` passes it."""
    import rlkit
    from rlkit.algorithm import Algorithm
    from rlkit.ops import masked_whiten
    from rlkit.plugins import get_plugin_manager
    from rlkit.testing import check_micro_batches_make_the_minibatch_gradient

    def policy_gradient(batch, out, advantages):
        mask = batch.response_mask
        return -(out.logprobs * advantages * mask).sum() / mask.sum(), {}

    class PerMicroBatch(Algorithm):
        name = "whiten_per_micro_batch"

        def prepare(self, batch):
            batch.advantages = batch.scores[:, None].expand_as(batch.response_mask).float()
            return {}

        def loss(self, batch, out):
            whitened = masked_whiten(batch.require("advantages"), batch.response_mask)
            return policy_gradient(batch, out, whitened)

    class PerMinibatch(PerMicroBatch):
        name = "whiten_per_minibatch"

        def prepare_minibatch(self, batch):
            batch.extras["whitened"] = masked_whiten(batch.require("advantages"),
                                                     batch.response_mask)

        def loss(self, batch, out):
            return policy_gradient(batch, out, batch.require("whitened"))

    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_algorithms(self, register):
            register(PerMicroBatch)
            register(PerMinibatch)

    get_plugin_manager().register(Plugin(), name="whitening")
    with pytest.raises(AssertionError, match="prepare_minibatch"):
        check_micro_batches_make_the_minibatch_gradient("whiten_per_micro_batch")
    check_micro_batches_make_the_minibatch_gradient("whiten_per_minibatch")
