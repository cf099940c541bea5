"""Runnable example agents built on `durable_agent`, each with an end-to-end test."""
