"""Appeal packages: encryption at rest, package writing, operator CLI."""
