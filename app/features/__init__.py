"""What the analysts read: indicators' use, regime, support/resistance and confluence per symbol."""
