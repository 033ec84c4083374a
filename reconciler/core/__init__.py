"""What was observed and what to do about it. Pure: no I/O, no clock (time comes in as an argument)."""
