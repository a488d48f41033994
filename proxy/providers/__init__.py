"""Provider adapters: which paths each serves, its usage tap, its error JSON."""
