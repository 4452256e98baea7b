"""X-ray and CT: volumes, X-ray files, DRR rendering, registration."""
