"""A deterministic simulator driving the sans-I/O node: simulated clock, network and faults."""

from dynamo_ref.sim.network import Delay, InFlight, Link, LinkConfig, SimNetwork
from dynamo_ref.sim.simulation import (
    ClientHandle,
    NodeFactory,
    SimClock,
    SimNode,
    Simulation,
    SpecView,
    Stats,
)
from dynamo_ref.sim.trace import TraceWriter, canonical, encode

__all__ = [
    "ClientHandle",
    "Delay",
    "InFlight",
    "Link",
    "LinkConfig",
    "NodeFactory",
    "SimClock",
    "SimNetwork",
    "SimNode",
    "Simulation",
    "SpecView",
    "Stats",
    "TraceWriter",
    "canonical",
    "encode",
]
