"""The training engine: a readable loop on Lightning Fabric with exact resume."""
