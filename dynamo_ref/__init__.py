"""dynamo-ref: a formally checked reference implementation of Amazon's Dynamo."""

__version__ = "0.1.0"
