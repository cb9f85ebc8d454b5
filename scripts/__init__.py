"""The commands (tune, finalize, generate, score, demo), installed as `twobirds-*` console scripts."""
