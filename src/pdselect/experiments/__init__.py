"""The paper's experiment grid on the bundled data: methods x conflict levels x budgets x
seeds, the preference-learning probe, the oracle judge, and the grid's tables and plots.
"""
