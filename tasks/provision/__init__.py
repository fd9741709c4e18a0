"""One pyinfra @deploy per component; deploy.py includes them by host group."""
