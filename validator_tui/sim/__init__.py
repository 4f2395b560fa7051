"""Loopback simulators of the Platform API and the dstack VMM, for the demo and the tests."""
