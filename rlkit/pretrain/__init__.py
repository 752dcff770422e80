"""The supervised stages before RLHF (Stiennon et al. 2020; Ouyang et al. 2022), by stage:
tokenizer, SFT, reward model, and world-building samples; ``rlkit.training`` re-exports them."""
