"""CrossGuard policy pack for the pipeline (rules in `policy.rules`, pack in `__main__`)."""
