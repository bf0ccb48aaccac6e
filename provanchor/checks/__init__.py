"""Pure checks of a log that the indexer and the verifier share, below both.

A record decodes, is signed by its agent, sits at its seq with the right
prev, and a batch manifest agrees with its checkpoint: the indexer (which
records problems) and the verifier (which reports them) ask the same
questions, so the answers are computed once, here, from bytes alone.
"""
