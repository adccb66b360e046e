"""rgd: Routing with Generated Data (RGD) and the CASCAL router."""

__version__ = "0.1.0"
