"""End-to-end tests of the lighthouse server: a real server process on loopback, real clients."""
