"""Analysis and plots of frames, teachers and (later) simulations."""
