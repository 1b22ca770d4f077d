"""Real example skills, published on first start of skillwarden serve."""
