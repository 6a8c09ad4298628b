"""Pure values, ports and the error tree: the standard library only, nothing from the rest of `app`."""
