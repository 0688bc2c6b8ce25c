"""Security primitives with no database: password hashing, password rules, secret keys."""
