"""The environment variables dynamo-ref reads, named once (a light module: the CLI imports it
at start)."""

from typing import Final

CLUSTER_DIR_ENV: Final = "DYNAMO_REF_CLUSTER_DIR"  # `cluster up`'s directory
SECRET_ENV: Final = "DYNAMO_REF_SECRET"  # the cluster secret
TOKEN_ENV: Final = "DYNAMO_REF_CLIENT_TOKEN"  # the client token
LOOP_ENV: Final = "DYNAMO_REF_LOOP"  # uvloop (default) or asyncio
