"""npctr's version, in a leaf module so that ``io`` and the exporters read it without importing the package."""
__version__ = "0.1.0"
