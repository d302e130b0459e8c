"""Select: selectors under a budget, threshold selection at scale, and the TRL hand-off.
"""
