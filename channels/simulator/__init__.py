"""The provider simulator: a local Twilio and SendGrid for the demo, tests and benchmarks."""

from channels.simulator.app import create_simulator

__all__ = ["create_simulator"]
