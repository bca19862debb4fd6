"""xweg's shared vocabulary: identifiers, messages, errors, clock. Pure: stdlib only."""
