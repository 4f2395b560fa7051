"""Shared fixtures: the loopback simulators and test identities."""

pytest_plugins = ["tests.fixtures.platform_sim", "tests.fixtures.vmm_sim"]

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
