"""Score: cross-scoring with the per-aspect proxies, normalisation and PD (METHOD.md 3.3-4),
in memory or sharded/streamed (local or Ray).
"""
