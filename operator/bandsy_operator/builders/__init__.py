"""Pure builders: resource models in, Kubernetes manifests (plain dicts) out. No I/O here."""
