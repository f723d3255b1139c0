"""Simulation: env adapters, scripted demonstrations and rollout evaluation."""
