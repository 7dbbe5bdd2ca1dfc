"""Elastic ResNet50 super-network, its sub-network configurations and standalone extraction."""
