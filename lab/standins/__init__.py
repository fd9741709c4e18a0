"""Every stand-in of the lab (test equipment, never deployed to a real host): cloudflared.py and
scoreboard.py, single-file scripts the lab copies onto its hosts for the services they run; hcloud.py,
the Hetzner Cloud API on 127.0.0.1 for tests/unit/test_hetzner.py."""
