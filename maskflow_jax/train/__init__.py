"""Training: state, optimizer, jitted step and the loop."""
