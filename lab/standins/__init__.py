"""Stand-ins for the services the lab hosts run: single-file scripts the lab copies onto them."""
