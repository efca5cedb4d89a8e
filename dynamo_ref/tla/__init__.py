"""Running TLC over spec/ and reading its verdicts."""
