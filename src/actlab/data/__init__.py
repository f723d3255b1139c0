"""Data layer: every format becomes an EpisodeStore, and windows over it become LeRobot-style batches."""
