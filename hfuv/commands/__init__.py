"""The `hfuv` commands, by theme; `hfuv.cli` holds the group and what they share."""
