"""Reconcilers: one idempotent function per custom resource, wiring builders to the API."""
