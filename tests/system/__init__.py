"""Whole-product tests: adversarial inputs, concurrency, kills, faults, full disks, golden files,
browsers and deliverability, each across several subpackages."""
