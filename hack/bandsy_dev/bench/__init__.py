"""``make bench``: the SPEC §9 bars measured on real local servers (see ``__main__``)."""
