"""The central registry: federation definition, signed global configuration publication."""
