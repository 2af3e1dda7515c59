"""Everything that touches git goes through this package."""
