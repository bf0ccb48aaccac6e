"""The provanchor agent: watches directories and turns file changes into records."""
