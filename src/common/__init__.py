"""Code shared by every service: settings, logging, health, serving."""
