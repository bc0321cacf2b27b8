"""harness: measure how robust image hashes are to the edits that make near-duplicates."""

__version__ = "0.1.0"
