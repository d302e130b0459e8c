"""Alignment after selection: DPO / DFPO through TRL (``dpo``, ``dfpo``), the policy model
(``policy``) and the implicit-reward evaluation (``implicit_reward``). The opt-in align/eval
stages that drive them are ``pdselect.policy_stages``.
"""
