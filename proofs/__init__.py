"""CrossHair runs over the core contracts; see README.md."""
